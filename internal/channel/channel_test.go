package channel

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValid(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"a", "user:42", "team:7.alerts", "x@y=z", "A-Z_0-9", strings.Repeat("c", MaxLen)} {
		if err := Valid(ok); err != nil {
			t.Errorf("Valid(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", strings.Repeat("c", MaxLen+1), " a", "a ", "a/b", "%2F", "*", "#", "$sys", "?", "a\\b",
		"a\x00", "a\r", "a\n", "a\t", "Cyrillic\u0430", "e\u0301", "\u00e9", "a\u202e", "a\u200b", "\ufeffa", "😀", "user:*"} {
		if err := Valid(bad); err == nil {
			t.Errorf("Valid(%q) = nil, want an error", bad)
		}
	}
}

func TestValidPattern(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"team:*", "a", "user:42", "x*"} {
		if err := ValidPattern(ok); err != nil {
			t.Errorf("ValidPattern(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"*", "", "a**", "a*b", "a/b*", " *"} {
		if err := ValidPattern(bad); err == nil {
			t.Errorf("ValidPattern(%q) = nil, want an error", bad)
		}
	}
}

func TestAllowed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sub     string
		grants  []string
		channel string
		want    bool
	}{
		{"42", nil, "user:42", true},
		{"42", nil, "user:43", false},
		{"42", []string{"user:*"}, "user:43", false},   // grants never open another user's channel
		{"42", []string{"user:43"}, "user:43", false},  // not even by name
		{"42", []string{"user:4*"}, "user:420", false}, // nor by prefix
		{"42", nil, "user:", false},
		{"", nil, "user:", true}, // an empty subject is refused earlier, at token verification
		{"42", nil, "broadcast", true},
		{"42", nil, "dashboard", true},
		{"42", nil, "team:1", false},
		{"42", []string{"team:1"}, "team:1", true},
		{"42", []string{"team:1"}, "team:10", false},
		{"42", []string{"team:*"}, "team:10", true},
		{"42", []string{"team:*"}, "teams", false},
		{"42", []string{"x*"}, "xylophone", true},
	}
	for _, tt := range tests {
		if got := Allowed(tt.sub, tt.grants, tt.channel); got != tt.want {
			t.Errorf("Allowed(%q, %q, %q) = %v, want %v", tt.sub, tt.grants, tt.channel, got, tt.want)
		}
	}
}

var allowList = regexp.MustCompile(`^[A-Za-z0-9_\-.:@=]{1,200}$`)

func FuzzChannelName(f *testing.F) {
	for _, s := range []string{"a", "user:42", "", "a/b", "\u0430", "e\u0301", "\x00", "a\r\nb", strings.Repeat("z", 201)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if Valid(s) != nil {
			return
		}
		// Accepted: the allow-list, valid UTF-8 (ASCII even), and nothing to normalise.
		if !allowList.MatchString(s) || !utf8.ValidString(s) {
			t.Fatalf("Valid accepted %q", s)
		}
		for _, r := range s {
			if r > 0x7e || r < 0x21 {
				t.Fatalf("Valid accepted %q with %U", s, r)
			}
		}
	})
}
