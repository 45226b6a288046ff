/**
 * The one error catalogue (DESIGN.md, convention 6). Every error the API or the CLI reports has a
 * stable code from here, an HTTP status, a title, and a hint that says how to fix it. The detail of
 * each occurrence (what exactly happened) is given where the error is raised.
 *
 * `docs/errors.md` is generated from this file (`npm run docs:errors`); a test keeps them in sync.
 */
export interface CatalogueEntry {
  status: number;
  title: string;
  /** How to fix it, in general; appended to the detail unless the detail already explains. */
  hint: string;
}

export const catalogue = {
  YUN_BAD_REQUEST: { status: 400, title: 'Bad request', hint: 'Check the request against the API reference at /v1/openapi.json.' },
  YUN_VALIDATION_FAILED: { status: 400, title: 'Invalid request', hint: 'Fix the named field and send the request again; unknown fields are rejected, not ignored.' },
  YUN_UNKNOWN_QUERY_PARAMETER: { status: 400, title: 'Unknown query parameter', hint: 'Remove the parameter; the route lists the ones it accepts in /v1/openapi.json.' },
  YUN_BAD_MARKER: { status: 400, title: 'Bad pagination marker', hint: 'Use the `next` link of the previous page, or start again without `marker`.' },
  YUN_BAD_SORT: { status: 400, title: 'Bad sort key', hint: 'Use sort=KEY:asc or sort=KEY:desc with one of the keys the list accepts.' },
  YUN_BAD_FILTER: { status: 400, title: 'Bad filter', hint: 'Use FIELD=VALUE (or label=KEY / label=KEY=VALUE) with a field the list accepts.' },
  YUN_INVALID_JSON: { status: 400, title: 'Malformed JSON body', hint: 'Send a valid JSON document with Content-Type: application/json.' },
  YUN_UNAUTHENTICATED: { status: 401, title: 'Authentication required', hint: 'Send a token in X-Auth-Token or Authorization: Bearer; get one with `yun login` or POST /v1/auth/tokens.' },
  YUN_TOKEN_INVALID: { status: 401, title: 'Invalid token', hint: 'The token is unknown, revoked or malformed; log in again (`yun login`).' },
  YUN_TOKEN_EXPIRED: { status: 401, title: 'Token expired', hint: 'Log in again (`yun login`) or issue a new token (`yun token issue`).' },
  YUN_BAD_CREDENTIALS: { status: 401, title: 'Wrong user name or password', hint: 'Check YUN_USERNAME / YUN_PASSWORD (for the admin, in DATA_DIR/admin.env).' },
  YUN_NO_ROLE_ON_PROJECT: { status: 401, title: 'No role on project', hint: 'Ask an admin to grant a role with `yun role add ROLE --user U --project P`, or log in to a project you belong to.' },
  YUN_JOIN_TOKEN_INVALID: { status: 401, title: 'Invalid join token', hint: 'Print the current token on a manager with `yun join-token worker` (or manager); rotated tokens stop working.' },
  YUN_NODE_REMOVED: { status: 401, title: 'Node removed', hint: 'The node was removed from the cluster: delete the agent\'s data directory and join again with a current join token.' },
  YUN_FORBIDDEN: { status: 403, title: 'Not allowed', hint: 'Ask an admin for a role that allows it (admin > member > reader).' },
  YUN_QUOTA_EXCEEDED: { status: 403, title: 'Quota exceeded', hint: 'Free some resources, or ask an admin to raise the quota (`yun quota set PROJECT --KEY N`).' },
  YUN_NOT_FOUND: { status: 404, title: 'Not found', hint: 'Check the id or name; list what exists with the matching `ls` command.' },
  YUN_ROUTE_NOT_FOUND: { status: 404, title: 'No such route', hint: 'See /v1/openapi.json for the routes this server has.' },
  YUN_METHOD_NOT_ALLOWED: { status: 405, title: 'Method not allowed', hint: 'See /v1/openapi.json for the methods this route accepts.' },
  YUN_NAME_CONFLICT: { status: 409, title: 'Name already in use', hint: 'Choose another name, or remove the existing object first.' },
  YUN_VERSION_CONFLICT: { status: 409, title: 'Version conflict', hint: 'The object changed since you read it: read it again, re-apply your change, and send the new version.' },
  YUN_PORT_IN_USE: { status: 409, title: 'Port already published', hint: 'Publish another port, or remove the service that holds it.' },
  YUN_CLAIM_TAKEN: { status: 409, title: 'Already taken', hint: 'Something else took it first (perhaps at the same moment): choose another, or retry.' },
  YUN_AMBIGUOUS_NAME: { status: 409, title: 'Name names several objects', hint: 'Name it by its id (the detail lists the candidates).' },
  YUN_IN_USE: { status: 409, title: 'Still in use', hint: 'Remove what uses it first.' },
  YUN_DATA_TOO_NEW: { status: 409, title: 'Data from a newer version', hint: 'Run the Yunstack version that wrote the data directory, or a newer one.' },
  YUN_SUBNET_CONFLICT: { status: 409, title: 'Subnet overlaps another network', hint: 'Choose a subnet that overlaps no other network (`yun network ls` shows theirs), or leave --subnet out to get a free one.' },
  YUN_NETWORK_NOT_ATTACHABLE: { status: 409, title: 'Network not attachable', hint: 'Only services may join this network; create one with `yun network create --attachable NAME` for one-off tasks, or debug from a task of a service on it (`yun task exec`).' },
  YUN_INVALID_STATE: { status: 409, title: 'Not allowed in this state', hint: 'Wait for the action in progress to finish (`yun server show`), or bring the server into one of the states named (e.g. `yun server start`).' },
  YUN_WATCH_EXPIRED: { status: 410, title: 'Revision no longer available', hint: 'List again and watch from the revision that list returned.' },
  YUN_URI_TOO_LONG: { status: 414, title: 'URL too long', hint: 'Ids and names are at most a few hundred characters; check the URL.' },
  YUN_UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Unsupported media type', hint: 'Send the body as Content-Type: application/json.' },
  YUN_VERSION_REQUIRED: { status: 428, title: 'Version required', hint: 'Send the version you read, in If-Match or as `version` in the body, so that concurrent changes are never silently overwritten.' },
  YUN_PAYLOAD_TOO_LARGE: { status: 413, title: 'Request body too large', hint: 'Send a smaller body; the limit is in the detail.' },
  YUN_RATE_LIMITED: { status: 429, title: 'Too many requests', hint: 'Slow down; retry after the number of seconds in Retry-After.' },
  YUN_INTERNAL: { status: 500, title: 'Internal error', hint: 'This is a bug in Yunstack: report it with the request id; the manager log has the stack trace.' },
  YUN_UNAVAILABLE: { status: 503, title: 'Service unavailable', hint: 'Retry shortly; if it persists, check `yun status` and the manager log.' },
  // Images (the node image store).
  YUN_IMAGE_INVALID: { status: 422, title: 'Invalid image', hint: 'Check how the archive was made (`docker save IMAGE -o FILE`, `skopeo copy … oci:DIR:TAG` or `oci-archive:FILE`) and that it was copied completely.' },
  YUN_DIGEST_MISMATCH: { status: 422, title: 'Digest mismatch', hint: 'The content is corrupt or was tampered with: get the image again from a trusted source; never edit an image\'s files by hand.' },
  YUN_UNSAFE_LAYER: { status: 422, title: 'Unsafe image layer', hint: 'The layer would write outside the image\'s root file system, through a link, or create a device node: do not run this image; rebuild it from a trusted source.' },
  // Servers: refusals at create, and the codes of a server's `fault` (ERROR).
  YUN_FLAVOR_TOO_SMALL: { status: 400, title: 'Flavor too small for the image', hint: 'Choose a flavor with at least the disk and RAM the image needs (`yun flavor ls`), or an image that fits the flavor.' },
  YUN_NO_VALID_HOST: { status: 503, title: 'No node can host the server', hint: 'The detail names each filter and how many nodes it ruled out: free resources, add a node, or choose a smaller flavor or another driver; then delete the server and create it again.' },
  YUN_INSUFFICIENT_DISK: { status: 422, title: 'Not enough disk on any node', hint: 'Ask for less (the detail says what each node has free), delete volumes or servers you no longer need, or add a node with more disk.' },
  YUN_VOLUME_FAILED: { status: 500, title: 'The volume operation failed on its node', hint: 'The detail has the node\'s own error (a full disk, a missing tool): fix its cause (`yun doctor`), then delete the volume (or snapshot) and make it again.' },
  YUN_BUILD_FAILED: { status: 500, title: 'The server could not be built or booted', hint: 'The detail has the driver\'s own error; fix its cause (see `yun doctor` for the node), then `yun server rebuild` or delete and create it again.' },
  // Errors the CLI reports without a server round trip.
  YUN_DATA_DIR_LOCKED: { status: 409, title: 'Data directory in use', hint: 'Another `yun up` is running on this data directory: stop it, or use another --data-dir.' },
  YUN_CONFIG_INVALID: { status: 400, title: 'Invalid configuration', hint: 'Fix the named option or environment variable.' },
  YUN_CONNECTION_FAILED: { status: 503, title: 'Cannot reach the server', hint: 'Check YUN_URL and that `yun up` is running (`yun status`).' },
  YUN_TLS_FAILED: { status: 503, title: 'TLS verification failed', hint: 'Point YUN_CACERT at the cloud CA (DATA_DIR/pki/ca.crt), or `source DATA_DIR/admin.env`.' },
  YUN_USAGE: { status: 400, title: 'Invalid command line', hint: 'Run the command with --help for its options.' },
  // Pulling from a container registry (src/images/registry.ts).
  YUN_IMAGE_REFERENCE_INVALID: { status: 400, title: 'Invalid image reference', hint: 'Write it as [HOST[:PORT]/]REPO[:TAG][@sha256:DIGEST], e.g. busybox:1.36 or 127.0.0.1:5000/team/app:v2; repository names are lowercase.' },
  YUN_REGISTRY_NOT_FOUND: { status: 404, title: 'Image not found in the registry', hint: 'Check the repository name and the tag or digest; the detail has the registry\'s own answer.' },
  YUN_REGISTRY_NO_PLATFORM: { status: 404, title: 'No image for this platform', hint: 'The image index has no variant for the platform needed (linux/amd64 unless another is asked for); use an image built for it — the detail lists the platforms the index has.' },
  YUN_REGISTRY_AUTH_FAILED: { status: 403, title: 'Registry authentication failed', hint: 'Check the repository name (private and missing repositories look alike), and give the registry user name and password if it needs them.' },
  YUN_REGISTRY_TLS_FAILED: { status: 502, title: 'Registry TLS failed', hint: 'Pass the registry\'s CA certificate with --ca FILE, or --insecure for a test registry you trust.' },
  YUN_REGISTRY_UNREACHABLE: { status: 502, title: 'Cannot reach the registry', hint: 'Check the registry address and port in the image reference, the network, and HTTPS_PROXY / NO_PROXY.' },
  YUN_REGISTRY_DIGEST_MISMATCH: { status: 502, title: 'Content does not match its digest', hint: 'Pull again; if it persists, the registry\'s copy is damaged or tampered with: re-push the image.' },
  YUN_REGISTRY_ERROR: { status: 502, title: 'Registry error', hint: 'Check the image reference and the registry; the detail has the registry\'s answer.' },
} as const satisfies Record<string, CatalogueEntry>;

export type ErrorCode = keyof typeof catalogue;
