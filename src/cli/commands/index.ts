import type { CommandSpec } from '../command.js';
import up from './up.js';
import version from './version.js';
import status from './status.js';
import login from './login.js';
import logout from './logout.js';
import tokenIssue from './token-issue.js';
import tokenRevoke from './token-revoke.js';
import projectLs from './project-ls.js';
import projectCreate from './project-create.js';
import projectShow from './project-show.js';
import projectRm from './project-rm.js';
import userLs from './user-ls.js';
import userCreate from './user-create.js';
import userShow from './user-show.js';
import userRm from './user-rm.js';
import roleAdd from './role-add.js';
import roleRm from './role-rm.js';
import roleLs from './role-ls.js';
import quotaShow from './quota-show.js';
import quotaSet from './quota-set.js';
import auditLs from './audit-ls.js';
import nodeLs from './node-ls.js';
import nodeInspect from './node-inspect.js';
import nodeUpdate from './node-update.js';
import nodeRm from './node-rm.js';
import joinToken from './join-token.js';
import agent from './agent.js';
import serviceCreate from './service-create.js';
import serviceLs from './service-ls.js';
import servicePs from './service-ps.js';
import serviceInspect from './service-inspect.js';
import serviceScale from './service-scale.js';
import serviceUpdate from './service-update.js';
import serviceRollback from './service-rollback.js';
import serviceRm from './service-rm.js';
import serviceLogs from './service-logs.js';
import nodePs from './node-ps.js';
import taskLogs from './task-logs.js';
import taskExec from './task-exec.js';
import taskInspect from './task-inspect.js';
import imageLs from './image-ls.js';
import imageInspect from './image-inspect.js';
import imageTag from './image-tag.js';
import imageRm from './image-rm.js';
import imageImport from './image-import.js';
import imageImportRootfs from './image-import-rootfs.js';
import imagePull from './image-pull.js';
import networkCreate from './network-create.js';
import networkLs from './network-ls.js';
import networkInspect from './network-inspect.js';
import networkRm from './network-rm.js';
import run from './run.js';
import flavorLs from './flavor-ls.js';
import flavorShow from './flavor-show.js';
import flavorCreate from './flavor-create.js';
import flavorRm from './flavor-rm.js';
import keypairCreate from './keypair-create.js';
import keypairLs from './keypair-ls.js';
import keypairShow from './keypair-show.js';
import keypairRm from './keypair-rm.js';
import secretCreate from './secret-create.js';
import secretLs from './secret-ls.js';
import secretInspect from './secret-inspect.js';
import secretRm from './secret-rm.js';
import configCreate from './config-create.js';
import configLs from './config-ls.js';
import configInspect from './config-inspect.js';
import configRm from './config-rm.js';
import secretRotateKey from './secret-rotate-key.js';
import secretUpdate from './secret-update.js';
import configUpdate from './config-update.js';
import serverCreate from './server-create.js';
import serverLs from './server-ls.js';
import serverShow from './server-show.js';
import serverStart from './server-start.js';
import serverStop from './server-stop.js';
import serverReboot from './server-reboot.js';
import serverPause from './server-pause.js';
import serverUnpause from './server-unpause.js';
import serverSuspend from './server-suspend.js';
import serverResume from './server-resume.js';
import serverRebuild from './server-rebuild.js';
import serverResize from './server-resize.js';
import serverResizeConfirm from './server-resize-confirm.js';
import serverResizeRevert from './server-resize-revert.js';
import serverConsoleLog from './server-console-log.js';
import serverConsole from './server-console.js';
import serverEvents from './server-events.js';
import serverRm from './server-rm.js';
import serverImageCreate from './server-image-create.js';
import imageDownload from './image-download.js';
import imageCreate from './image-create.js';
import imageUpload from './image-upload.js';
import imageSet from './image-set.js';
import { imageMemberAccept, imageMemberAdd, imageMemberLs, imageMemberReject, imageMemberRm } from './image-member.js';
import volumeCreate from './volume-create.js';
import volumeLs from './volume-ls.js';
import volumeShow from './volume-show.js';
import volumeExtend from './volume-extend.js';
import volumeAttach from './volume-attach.js';
import volumeDetach from './volume-detach.js';
import volumeRm from './volume-rm.js';
import volumeSnapshot from './volume-snapshot.js';
import volumeSnapshotLs from './volume-snapshot-ls.js';
import volumeSnapshotRm from './volume-snapshot-rm.js';
import doctor from './doctor.js';

/** Every command, in the order `yun --help` lists them. */
export const commands: CommandSpec<any>[] = [
  up, version, status, doctor, login, logout, tokenIssue, tokenRevoke,
  projectLs, projectCreate, projectShow, projectRm,
  userLs, userCreate, userShow, userRm,
  roleAdd, roleRm, roleLs,
  quotaShow, quotaSet,
  auditLs,
  nodeLs, nodeInspect, nodeUpdate, nodeRm, nodePs, joinToken, agent,
  serviceCreate, serviceLs, servicePs, serviceInspect, serviceScale, serviceUpdate, serviceRollback, serviceRm, serviceLogs,
  taskInspect, taskLogs, taskExec,
  imageLs, imageInspect, imageImport, imageImportRootfs, imagePull, imageCreate, imageUpload, imageSet, imageTag, imageRm,
  imageMemberAdd, imageMemberLs, imageMemberRm, imageMemberAccept, imageMemberReject,
  networkCreate, networkLs, networkInspect, networkRm, run,
  flavorLs, flavorShow, flavorCreate, flavorRm, keypairCreate, keypairLs, keypairShow, keypairRm,
  serverCreate, serverLs, serverShow, serverStart, serverStop, serverReboot, serverPause, serverUnpause, serverSuspend, serverResume, serverRebuild, serverResize, serverResizeConfirm, serverResizeRevert, serverConsoleLog, serverConsole, serverEvents, serverRm, serverImageCreate, imageDownload,
  secretCreate, secretLs, secretInspect, secretUpdate, secretRm, secretRotateKey, configCreate, configLs, configInspect, configUpdate, configRm,
  volumeCreate, volumeLs, volumeShow, volumeExtend, volumeAttach, volumeDetach, volumeRm, volumeSnapshot, volumeSnapshotLs, volumeSnapshotRm,
];

/** One-line descriptions of command groups. */
export const groups: Record<string, string> = {
  token: 'Issue and revoke tokens.',
  project: 'Manage projects (tenants).',
  user: 'Manage users.',
  role: 'Grant and take away roles on projects.',
  quota: 'Show and set project quotas.',
  audit: 'Read the audit log.',
  node: 'Manage the cluster\'s nodes.',
  service: 'Manage services (swarm mode).',
  task: 'Inspect tasks, read their logs, run commands in them.',
  image: 'Import, pull, create, upload, share, list and remove images.',
  'image member': 'Share images with other projects (Glance\'s image members).',
  network: 'Create, list, inspect and remove overlay networks.',
  flavor: 'List, show, create and remove flavors (server sizes).',
  keypair: 'Import, list and remove SSH key pairs for servers.',
  secret: 'Create, list, inspect, update and remove secrets (sealed at rest, never shown again).',
  config: 'Create, list, inspect, update and remove configs.',
  server: 'Servers: VMs and system containers with an OpenStack-style lifecycle.',
};
