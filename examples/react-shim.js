// react-shim.js lets ES modules `import … from "react"` use the React that
// vendor/react.production.min.js put on window, so the example needs no
// bundler. The page's import map points "react" here.
const React = window.React;
export default React;
export const {
  Children, Component, Fragment, PureComponent, StrictMode, Suspense,
  createContext, createElement, forwardRef, memo, startTransition,
  useCallback, useContext, useDebugValue, useDeferredValue, useEffect, useId,
  useImperativeHandle, useInsertionEffect, useLayoutEffect, useMemo, useReducer,
  useRef, useState, useSyncExternalStore, useTransition,
} = React;
