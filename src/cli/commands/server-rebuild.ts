import { actionCommand } from '../servers.js';

export default actionCommand('rebuild', 'rebuild', 'Rebuild servers: a new root disk from the image (its own, or --image); id, name, flavor, addresses kept.', {
  configure: (c) => c.option('--image <image>', 'the image to rebuild from (default: the server\'s)'),
  body: (o) => (o.image ? { image: String(o.image) } : {}),
});
