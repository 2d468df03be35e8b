import type { ReactNode } from 'react';
import type { HybridClient, HybridEvent, HybridRealtimeOptions, Member, Transport } from './index.js';
/** What useHybridRealtime returns. */
export interface UseHybridRealtimeResult {
    isConnected: boolean;
    /** 'websocket', 'sse', 'polling', or null when not connecting (the client's activeMethod). */
    connectionMethod: Transport | null;
    lastEvent: HybridEvent | null;
    error: Error | null;
    reconnect: () => void;
    /** The client, for publish and presence; null before the first effect and after unmount. */
    client: HybridClient | null;
}
/**
 * useHybridRealtime keeps a client connected while the component is
 * mounted. Handlers and getToken may change on every render without a
 * reconnect; a change of url, channels, transports, the set of handled event
 * types or a tuning option reconnects.
 */
export declare function useHybridRealtime(options: HybridRealtimeOptions): UseHybridRealtimeResult;
/** What HybridRealtimeProvider gives its subtree. */
export interface HybridRealtimeValue extends UseHybridRealtimeResult {
}
/** Props of HybridRealtimeProvider: the client's options, and the subtree. */
export interface HybridRealtimeProviderProps extends HybridRealtimeOptions {
    children?: ReactNode;
}
/**
 * HybridRealtimeProvider keeps one client connected for its subtree, which
 * reads it with useHybridClient, usePresence and usePublish. Options behave
 * as in useHybridRealtime.
 */
export declare function HybridRealtimeProvider(props: HybridRealtimeProviderProps): import("react").FunctionComponentElement<import("react").ProviderProps<HybridRealtimeValue | null>>;
/** useHybridRealtimeContext reads the nearest HybridRealtimeProvider: its state and client. */
export declare function useHybridRealtimeContext(): HybridRealtimeValue;
/** useHybridClient returns the nearest HybridRealtimeProvider's client (null until it has started). */
export declare function useHybridClient(): HybridClient | null;
/** Callbacks of usePresence. */
export interface UsePresenceOptions<I = unknown> {
    /** A user joined after the members were first heard. */
    onJoin?: (member: Member<I>) => void;
    /** A user's last connection left. */
    onLeave?: (member: Member<I>) => void;
}
/**
 * usePresence returns the members of a presence channel of the nearest
 * HybridRealtimeProvider, ordered by id, or null until they are heard; the
 * component renders again on every join and leave. The callbacks may change
 * on every render.
 */
export declare function usePresence<I = unknown>(channel: string, options?: UsePresenceOptions<I>): Member<I>[] | null;
/**
 * usePublish returns a function that sends a client event through the
 * nearest HybridRealtimeProvider's client (see HybridClient.publish); it
 * rejects while the client has not started.
 */
export declare function usePublish(): (channel: string, type: string, data?: unknown) => Promise<string>;
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
