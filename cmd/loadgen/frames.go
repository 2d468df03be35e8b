package main

import (
	"bytes"

	"github.com/gorilla/websocket"
)

// readFrames reads ws's messages one at a time into one reused buffer and
// hands each to f, until the connection or f fails. The bytes are f's only
// until it returns.
func readFrames(ws *websocket.Conn, f func(b []byte) error) error {
	var msg bytes.Buffer
	for {
		_, r, err := ws.NextReader()
		if err != nil {
			return err
		}
		msg.Reset()
		if _, err := msg.ReadFrom(r); err != nil {
			return err
		}
		if err := f(msg.Bytes()); err != nil {
			return err
		}
	}
}

// nativeEventID reads the id of a hybridrt.v1 event frame without decoding
// it: event says whether b is one, ok whether its id could be read.
func nativeEventID(b []byte) (id int64, event, ok bool) {
	rest, event := bytes.CutPrefix(b, nativeEvent)
	if !event {
		return 0, false, false
	}
	k := bytes.IndexByte(rest, '"')
	if k <= 0 {
		return 0, true, false
	}
	id, ok = parseDigits(rest[:k])
	return id, true, ok
}
