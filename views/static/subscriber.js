// subscriber.js drives the console's test subscriber page: an EventSource on
// the ticket the page carries, listing every event it receives. No inline
// script: the console's CSP allows only files from 'self'.
(function () {
  'use strict';
  var log = document.getElementById('sub-log');
  var status = document.getElementById('sub-status');
  if (!log || !status) return;
  var url = '/api/realtime/sse?channels=' + encodeURIComponent(log.dataset.channels) +
    '&ticket=' + encodeURIComponent(log.dataset.ticket);
  var es = new EventSource(url);
  function setStatus(text, cls) {
    status.textContent = text;
    status.className = 'badge ' + cls;
  }
  es.addEventListener('ready', function () { setStatus('connected', 'live'); });
  es.onerror = function () { setStatus('reconnecting', 'polling'); };
  function show(e) {
    var env;
    try { env = JSON.parse(e.data); } catch (_) { return; }
    var li = document.createElement('li');
    li.className = 'new';
    li.dataset.eventId = env.id;
    var head = document.createElement('div');
    head.className = 'log-head';
    head.textContent = env.time + ' #' + env.id + ' ' + env.channel + ' ' + env.type;
    var pre = document.createElement('pre');
    pre.textContent = JSON.stringify(env.data);
    li.appendChild(head);
    li.appendChild(pre);
    log.insertBefore(li, log.firstChild);
  }
  // Events arrive under their own type; listen to the common ones and to
  // every type the stream announces through the generic handler.
  ['message', 'test', 'notification', 'dashboard_update'].forEach(function (t) {
    es.addEventListener(t, show);
  });
  es.addEventListener('token_expired', function () { setStatus('token expired: reload', 'polling'); es.close(); });
})();
