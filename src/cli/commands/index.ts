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
  imageLs, imageInspect, imageImport, imageImportRootfs, imagePull, imageTag, imageRm,
  networkCreate, networkLs, networkInspect, networkRm, run,
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
  image: 'Import, pull, list and remove images.',
  network: 'Create, list, inspect and remove overlay networks.',
};
