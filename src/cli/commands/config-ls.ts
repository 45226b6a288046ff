import { blobLs, CONFIG_CLI } from '../blobs.js';

export default blobLs(CONFIG_CLI);
