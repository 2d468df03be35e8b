// React bindings: useHybridRealtime; a provider that shares one client with
// a subtree, and the hooks that use it (usePresence, usePublish); and a
// dashboard provider and hook, with the names of the module hybridrt grew
// out of. React is a peer dependency; the core bundle does not import it.

import { createContext, createElement, useCallback, useContext, useEffect, useMemo, useRef, useState } from 'react';
import type { ReactNode } from 'react';
import { createHybridRealtime } from './index.js';
import type { EventHandler, HybridClient, HybridEvent, HybridRealtimeOptions, HybridState, Member, Transport } from './index.js';

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
export function useHybridRealtime(options: HybridRealtimeOptions): UseHybridRealtimeResult {
  const latest = useRef(options);
  latest.current = options;
  const clientRef = useRef<HybridClient | null>(null);
  const [state, setState] = useState<HybridState>(() => ({
    isConnected: false, activeMethod: null, lastEvent: null, error: null, cursor: options.cursor ?? null, role: 'solo', connectionId: null,
  }));
  const [client, setClient] = useState<HybridClient | null>(null);
  const key = connectionKey(options);

  useEffect(() => {
    const o = latest.current;
    const eventHandlers: Record<string, EventHandler> = {};
    for (const type of Object.keys(o.eventHandlers ?? {})) {
      eventHandlers[type] = (e) => latest.current.eventHandlers?.[type]?.(e);
    }
    const client = createHybridRealtime({
      ...o,
      getToken: () => latest.current.getToken(),
      eventHandlers,
      onStateChange: undefined,
    });
    clientRef.current = client;
    setClient(client);
    setState(client.state);
    const stop = client.subscribe((s) => {
      setState(s);
      latest.current.onStateChange?.(s);
    });
    return () => {
      stop();
      client.close();
      if (clientRef.current === client) clientRef.current = null;
      setClient((c) => (c === client ? null : c));
    };
  }, [key]);

  const reconnect = useCallback(() => clientRef.current?.reconnect(), []);
  return useMemo(() => ({
    isConnected: state.isConnected,
    connectionMethod: state.activeMethod,
    lastEvent: state.lastEvent,
    error: state.error,
    reconnect,
    client,
  }), [state, reconnect, client]);
}

function connectionKey(o: HybridRealtimeOptions): string {
  return JSON.stringify([
    o.url, o.channels, o.transports ?? null, Object.keys(o.eventHandlers ?? {}).sort(), o.eventTypes ?? null,
    o.shareAcrossTabs ?? null, o.openTimeoutMs ?? o.sseOpenTimeoutMs ?? null,
    o.failuresBeforeFallback ?? o.sseFailuresBeforePolling ?? null, o.retryIntervalMs ?? o.sseRetryIntervalMs ?? null,
    o.pollTimeoutS ?? null, o.backoff ?? null,
  ]);
}

// --- one client for a subtree: presence and client events -------------------------------

/** What HybridRealtimeProvider gives its subtree. */
export interface HybridRealtimeValue extends UseHybridRealtimeResult {}

const RealtimeContext = createContext<HybridRealtimeValue | null>(null);

/** Props of HybridRealtimeProvider: the client's options, and the subtree. */
export interface HybridRealtimeProviderProps extends HybridRealtimeOptions {
  children?: ReactNode;
}

/**
 * HybridRealtimeProvider keeps one client connected for its subtree, which
 * reads it with useHybridClient, usePresence and usePublish. Options behave
 * as in useHybridRealtime.
 */
export function HybridRealtimeProvider(props: HybridRealtimeProviderProps) {
  const { children, ...options } = props;
  const value = useHybridRealtime(options);
  return createElement(RealtimeContext.Provider, { value }, children);
}

/** useHybridRealtimeContext reads the nearest HybridRealtimeProvider: its state and client. */
export function useHybridRealtimeContext(): HybridRealtimeValue {
  const v = useContext(RealtimeContext);
  if (!v) throw new Error('hybridrt: this hook must be used inside <HybridRealtimeProvider>');
  return v;
}

/** useHybridClient returns the nearest HybridRealtimeProvider's client (null until it has started). */
export function useHybridClient(): HybridClient | null {
  return useHybridRealtimeContext().client;
}

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
export function usePresence<I = unknown>(channel: string, options: UsePresenceOptions<I> = {}): Member<I>[] | null {
  const client = useHybridClient();
  const latest = useRef(options);
  latest.current = options;
  const [members, setMembers] = useState<Member<I>[] | null>(null);
  useEffect(() => {
    if (!client) {
      setMembers(null);
      return;
    }
    const room = client.presence<I>(channel);
    setMembers(room.members);
    const stops = [
      room.subscribe((m) => setMembers(m)),
      room.onJoin((m) => latest.current.onJoin?.(m)),
      room.onLeave((m) => latest.current.onLeave?.(m)),
    ];
    return () => {
      for (const stop of stops) stop();
    };
  }, [client, channel]);
  return members;
}

/**
 * usePublish returns a function that sends a client event through the
 * nearest HybridRealtimeProvider's client (see HybridClient.publish); it
 * rejects while the client has not started.
 */
export function usePublish(): (channel: string, type: string, data?: unknown) => Promise<string> {
  const client = useHybridClient();
  return useCallback((channel: string, type: string, data?: unknown) => {
    if (!client) return Promise.reject(new Error('hybridrt: the client has not started yet'));
    return client.publish(channel, type, data);
  }, [client]);
}

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

const DashboardContext = createContext<HybridDashboardValue | null>(null);
const DASHBOARD_CHANNELS = ['dashboard'];

/**
 * HybridDashboardProvider subscribes to the dashboard channel and keeps the
 * dashboard's data for useHybridDashboard. On a `dashboard_update` event
 * (data `{updateType, data}`) it calls fetchDashboardData when given, else
 * merges the update's data into what it has (objects shallowly; anything
 * else replaces it). On `resync` it loads the data again.
 */
export function HybridDashboardProvider(props: HybridDashboardProviderProps) {
  const { children, fetchDashboardData, channels, eventHandlers, ...rest } = props;
  const [dashboardData, setDashboardData] = useState<any>(null);
  const [isLoading, setLoading] = useState<boolean>(Boolean(fetchDashboardData));
  const [fetchError, setFetchError] = useState<Error | null>(null);
  const fetchRef = useRef(fetchDashboardData);
  fetchRef.current = fetchDashboardData;
  const handlersRef = useRef(eventHandlers);
  handlersRef.current = eventHandlers;
  const seq = useRef(0); // only the latest load's answer counts
  const mounted = useRef(false);

  useEffect(() => {
    mounted.current = true;
    return () => {
      mounted.current = false;
    };
  }, []);

  const refreshDashboardData = useCallback(async () => {
    const load = fetchRef.current;
    if (!load) return;
    const mine = ++seq.current;
    setLoading(true);
    try {
      const data = await load();
      if (mounted.current && mine === seq.current) {
        setDashboardData(data);
        setFetchError(null);
      }
    } catch (err) {
      if (mounted.current && mine === seq.current) setFetchError(err instanceof Error ? err : new Error(String(err)));
    } finally {
      if (mounted.current && mine === seq.current) setLoading(false);
    }
  }, []);

  useEffect(() => {
    void refreshDashboardData();
  }, [refreshDashboardData]);

  const handlers: Record<string, EventHandler> = {};
  for (const type of Object.keys(eventHandlers ?? {})) handlers[type] = (e) => handlersRef.current?.[type]?.(e);
  handlers.dashboard_update = (e) => {
    handlersRef.current?.dashboard_update?.(e);
    if (fetchRef.current) {
      void refreshDashboardData();
      return;
    }
    const update = e.data as { updateType?: string; data?: unknown } | null;
    if (update && update.data !== undefined) setDashboardData((prev: any) => merge(prev, update.data));
  };
  handlers.resync = (e) => {
    handlersRef.current?.resync?.(e);
    void refreshDashboardData();
  };

  const rt = useHybridRealtime({ ...rest, channels: channels ?? DASHBOARD_CHANNELS, eventHandlers: handlers });
  const value = useMemo<HybridDashboardValue>(() => ({
    dashboardData,
    isLoading,
    isConnected: rt.isConnected,
    connectionMethod: rt.connectionMethod,
    refreshDashboardData,
    error: fetchError ?? rt.error,
  }), [dashboardData, isLoading, rt.isConnected, rt.connectionMethod, rt.error, fetchError, refreshDashboardData]);
  return createElement(DashboardContext.Provider, { value }, children);
}

/** useHybridDashboard reads the dashboard of the nearest HybridDashboardProvider. */
export function useHybridDashboard(): HybridDashboardValue {
  const v = useContext(DashboardContext);
  if (!v) throw new Error('useHybridDashboard must be used inside <HybridDashboardProvider>');
  return v;
}

function merge(prev: unknown, next: unknown): unknown {
  return isPlainObject(prev) && isPlainObject(next) ? { ...prev, ...next } : next;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
