/*! @hybridrt/client 0.1.0 | MIT */

// src/react.ts
import { createContext, createElement, useCallback, useContext, useEffect, useMemo, useRef, useState } from "react";
import { createHybridRealtime } from "./hybrid-realtime.js";
function useHybridRealtime(options) {
  const latest = useRef(options);
  latest.current = options;
  const clientRef = useRef(null);
  const [state, setState] = useState(() => ({
    isConnected: false,
    activeMethod: null,
    lastEvent: null,
    error: null,
    cursor: options.cursor ?? null,
    role: "solo",
    connectionId: null
  }));
  const [client, setClient] = useState(null);
  const key = connectionKey(options);
  useEffect(() => {
    const o = latest.current;
    const eventHandlers = {};
    for (const type of Object.keys(o.eventHandlers ?? {})) {
      eventHandlers[type] = (e) => latest.current.eventHandlers?.[type]?.(e);
    }
    const client2 = createHybridRealtime({
      ...o,
      getToken: () => latest.current.getToken(),
      eventHandlers,
      onStateChange: void 0
    });
    clientRef.current = client2;
    setClient(client2);
    setState(client2.state);
    const stop = client2.subscribe((s) => {
      setState(s);
      latest.current.onStateChange?.(s);
    });
    return () => {
      stop();
      client2.close();
      if (clientRef.current === client2) clientRef.current = null;
      setClient((c) => c === client2 ? null : c);
    };
  }, [key]);
  const reconnect = useCallback(() => clientRef.current?.reconnect(), []);
  return useMemo(() => ({
    isConnected: state.isConnected,
    connectionMethod: state.activeMethod,
    lastEvent: state.lastEvent,
    error: state.error,
    reconnect,
    client
  }), [state, reconnect, client]);
}
function connectionKey(o) {
  return JSON.stringify([
    o.url,
    o.channels,
    o.transports ?? null,
    Object.keys(o.eventHandlers ?? {}).sort(),
    o.eventTypes ?? null,
    o.shareAcrossTabs ?? null,
    o.openTimeoutMs ?? o.sseOpenTimeoutMs ?? null,
    o.failuresBeforeFallback ?? o.sseFailuresBeforePolling ?? null,
    o.retryIntervalMs ?? o.sseRetryIntervalMs ?? null,
    o.pollTimeoutS ?? null,
    o.backoff ?? null
  ]);
}
var RealtimeContext = createContext(null);
function HybridRealtimeProvider(props) {
  const { children, ...options } = props;
  const value = useHybridRealtime(options);
  return createElement(RealtimeContext.Provider, { value }, children);
}
function useHybridRealtimeContext() {
  const v = useContext(RealtimeContext);
  if (!v) throw new Error("hybridrt: this hook must be used inside <HybridRealtimeProvider>");
  return v;
}
function useHybridClient() {
  return useHybridRealtimeContext().client;
}
function usePresence(channel, options = {}) {
  const client = useHybridClient();
  const latest = useRef(options);
  latest.current = options;
  const [members, setMembers] = useState(null);
  useEffect(() => {
    if (!client) {
      setMembers(null);
      return;
    }
    const room = client.presence(channel);
    setMembers(room.members);
    const stops = [
      room.subscribe((m) => setMembers(m)),
      room.onJoin((m) => latest.current.onJoin?.(m)),
      room.onLeave((m) => latest.current.onLeave?.(m))
    ];
    return () => {
      for (const stop of stops) stop();
    };
  }, [client, channel]);
  return members;
}
function usePublish() {
  const client = useHybridClient();
  return useCallback((channel, type, data) => {
    if (!client) return Promise.reject(new Error("hybridrt: the client has not started yet"));
    return client.publish(channel, type, data);
  }, [client]);
}
var DashboardContext = createContext(null);
var DASHBOARD_CHANNELS = ["dashboard"];
function HybridDashboardProvider(props) {
  const { children, fetchDashboardData, channels, eventHandlers, ...rest } = props;
  const [dashboardData, setDashboardData] = useState(null);
  const [isLoading, setLoading] = useState(Boolean(fetchDashboardData));
  const [fetchError, setFetchError] = useState(null);
  const fetchRef = useRef(fetchDashboardData);
  fetchRef.current = fetchDashboardData;
  const handlersRef = useRef(eventHandlers);
  handlersRef.current = eventHandlers;
  const seq = useRef(0);
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
  const handlers = {};
  for (const type of Object.keys(eventHandlers ?? {})) handlers[type] = (e) => handlersRef.current?.[type]?.(e);
  handlers.dashboard_update = (e) => {
    handlersRef.current?.dashboard_update?.(e);
    if (fetchRef.current) {
      void refreshDashboardData();
      return;
    }
    const update = e.data;
    if (update && update.data !== void 0) setDashboardData((prev) => merge(prev, update.data));
  };
  handlers.resync = (e) => {
    handlersRef.current?.resync?.(e);
    void refreshDashboardData();
  };
  const rt = useHybridRealtime({ ...rest, channels: channels ?? DASHBOARD_CHANNELS, eventHandlers: handlers });
  const value = useMemo(() => ({
    dashboardData,
    isLoading,
    isConnected: rt.isConnected,
    connectionMethod: rt.connectionMethod,
    refreshDashboardData,
    error: fetchError ?? rt.error
  }), [dashboardData, isLoading, rt.isConnected, rt.connectionMethod, rt.error, fetchError, refreshDashboardData]);
  return createElement(DashboardContext.Provider, { value }, children);
}
function useHybridDashboard() {
  const v = useContext(DashboardContext);
  if (!v) throw new Error("useHybridDashboard must be used inside <HybridDashboardProvider>");
  return v;
}
function merge(prev, next) {
  return isPlainObject(prev) && isPlainObject(next) ? { ...prev, ...next } : next;
}
function isPlainObject(v) {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
export {
  HybridDashboardProvider,
  HybridRealtimeProvider,
  useHybridClient,
  useHybridDashboard,
  useHybridRealtime,
  useHybridRealtimeContext,
  usePresence,
  usePublish
};
