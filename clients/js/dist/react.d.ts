import type { ReactNode } from 'react';
import type { HybridEvent, HybridRealtimeOptions, Transport } from './index.js';
/** What useHybridRealtime returns. */
export interface UseHybridRealtimeResult {
    isConnected: boolean;
    /** 'sse', 'polling', or null when not connecting (the client's activeMethod). */
    connectionMethod: Transport | null;
    lastEvent: HybridEvent | null;
    error: Error | null;
    reconnect: () => void;
}
/**
 * useHybridRealtime keeps a client connected while the component is
 * mounted. Handlers and getToken may change on every render without a
 * reconnect; a change of url, channels, transports, the set of handled event
 * types or a tuning option reconnects.
 */
export declare function useHybridRealtime(options: HybridRealtimeOptions): UseHybridRealtimeResult;
/** Props of HybridDashboardProvider: the client's options, with channels ['dashboard'] by default. */
export interface HybridDashboardProviderProps extends Omit<HybridRealtimeOptions, 'channels'> {
    children?: ReactNode;
    channels?: string[];
    /** Loads the whole dashboard; called on mount, on every dashboard_update and on resync. */
    fetchDashboardData?: () => Promise<any>;
}
/** What useHybridDashboard returns. */
export interface HybridDashboardValue {
    /** The last loaded data; without fetchDashboardData, the updates' data merged into one object. */
    dashboardData: any;
    isLoading: boolean;
    isConnected: boolean;
    connectionMethod: Transport | null;
    /** Loads the data again with fetchDashboardData. */
    refreshDashboardData: () => Promise<void>;
    /** The last failure of fetchDashboardData, else of the connection. */
    error: Error | null;
}
/**
 * HybridDashboardProvider subscribes to the dashboard channel and keeps the
 * dashboard's data for useHybridDashboard. On a `dashboard_update` event
 * (data `{updateType, data}`) it calls fetchDashboardData when given, else
 * merges the update's data into what it has (objects shallowly; anything
 * else replaces it). On `resync` it loads the data again.
 */
export declare function HybridDashboardProvider(props: HybridDashboardProviderProps): import("react").FunctionComponentElement<import("react").ProviderProps<HybridDashboardValue | null>>;
/** useHybridDashboard reads the dashboard of the nearest HybridDashboardProvider. */
export declare function useHybridDashboard(): HybridDashboardValue;
