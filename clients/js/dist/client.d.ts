import type { HybridClient, HybridRealtimeOptions, Transport } from './types.js';
/** Defaults of the tuning options. */
export declare const DEFAULTS: {
    transports: Transport[];
    sseOpenTimeoutMs: number;
    sseFailuresBeforePolling: number;
    sseRetryIntervalMs: number;
    pollTimeoutS: number;
    backoff: {
        initialMs: number;
        maxMs: number;
    };
    shareAcrossTabs: boolean;
};
/**
 * createHybridRealtime connects to the service and calls the handlers with
 * each event of the channels, once and in order, over SSE or long-polling.
 */
export declare function createHybridRealtime(options: HybridRealtimeOptions): HybridClient;
