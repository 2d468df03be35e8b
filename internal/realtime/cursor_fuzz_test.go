package realtime

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// FuzzLastEventID (TESTPLAN section 3): ParseCursor, which reads every
// client-given position (Last-Event-ID, lastEventId, cursor, after), never
// panics; it refuses with ErrInvalid or accepts a plain decimal number that
// round-trips through the encoder. It takes no tenant: an id means the same
// number everywhere, so one from another tenant is just a number, refused
// later as cursor_ahead or served from this tenant's own events alike.
func FuzzLastEventID(f *testing.F) {
	for _, s := range []string{"", "0", "42", "007", "9223372036854775807", "9223372036854775808", "-1", "+1", "1e30",
		"0x10", " 1", "1 ", "\u0661", "\uff11", strings.Repeat("9", 1024), "1\x00", "1\n2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, given, err := ParseCursor(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || given || n != 0 {
				t.Fatalf("ParseCursor(%q) = %d, %v, %v; want 0, false, ErrInvalid", s, n, given, err)
			}
			return
		}
		if given != (s != "") || n < 0 || len(s) > 19 {
			t.Fatalf("ParseCursor(%q) = %d, given %v", s, n, given)
		}
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				t.Fatalf("ParseCursor accepted %q with byte %q", s, s[i])
			}
		}
		if !given {
			return
		}
		enc := strconv.FormatInt(n, 10)
		if back, ok, err := ParseCursor(enc); err != nil || !ok || back != n {
			t.Fatalf("ParseCursor(%q) = %d, but %d encodes as %q, which parses as %d, %v", s, n, n, enc, back, err)
		}
		if trimmed := strings.TrimLeft(s, "0"); enc != trimmed && !(n == 0 && trimmed == "") {
			t.Fatalf("ParseCursor(%q) = %d: not the same number", s, n)
		}
	})
}
