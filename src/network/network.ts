/** What a network stores (see ipam.ts for how its subnet is used). */
export interface NetworkData extends Record<string, unknown> {
  driver: 'overlay';
  subnet: string;
  attachable: boolean;
  /** VXLAN network identifier, unique in the cluster (4096…). */
  vni: number;
  labels: Record<string, string>;
  /** Node id → index of the node's slice of the subnet (allocated by the scheduler). */
  slices: Record<string, number>;
}
