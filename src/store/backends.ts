/** The store backends a manager can run on (the names `yun up --store` takes). */
export const STORE_BACKENDS = ['sqlite', 'memory'] as const;
export type StoreBackend = (typeof STORE_BACKENDS)[number];
