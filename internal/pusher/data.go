package pusher

import (
	"bytes"
	"encoding/json"
)

// A Pusher message's data is a string; hybridrt's is any JSON value. These
// two functions are the one mapping between them (DESIGN, "Data"), chosen so
// that pusher-js hands an app the value its server library sent: pusher-js
// parses a data string that is JSON and keeps any other as it is.

// FromPusher is the stored data of a Pusher trigger's data string: the JSON
// value it encodes, compacted, or else the string itself as a JSON string.
func FromPusher(data string) json.RawMessage {
	var b bytes.Buffer
	if json.Valid([]byte(data)) && json.Compact(&b, []byte(data)) == nil {
		return b.Bytes()
	}
	s, _ := json.Marshal(data) // a string always marshals
	return s
}

// ToPusher is the data string a Pusher client receives for stored data: a
// JSON string's text, any other value's JSON.
func ToPusher(data json.RawMessage) string {
	if len(data) > 0 && data[0] == '"' {
		var s string
		if json.Unmarshal(data, &s) == nil {
			return s
		}
	}
	return string(data)
}
