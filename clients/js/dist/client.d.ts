import type { HybridClient, HybridRealtimeOptions, Transport } from './types.js';
/** Defaults of the tuning options. */
export declare const DEFAULTS: {
    transports: Transport[];
    openTimeoutMs: number;
    failuresBeforeFallback: number;
    retryIntervalMs: number;
    pollTimeoutS: number;
    backoff: {
        initialMs: number;
        maxMs: number;
    };
    shareAcrossTabs: boolean;
};
/**
 * createHybridRealtime connects to the service and calls the handlers with
 * each event of the channels, once and in order, over hybridrt's WebSocket,
 * SSE or long-polling.
 */
export declare function createHybridRealtime(options: HybridRealtimeOptions): HybridClient;
