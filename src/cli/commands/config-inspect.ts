import { blobInspect, CONFIG_CLI } from '../blobs.js';

export default blobInspect(CONFIG_CLI);
