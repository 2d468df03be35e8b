package tenant

import (
	"context"
	"strings"
	"testing"
)

func TestCleanName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"  Acme  ": "Acme", "Café 42": "Café 42", strings.Repeat("é", 100): strings.Repeat("é", 100)} {
		if got, err := CleanName(in); err != nil || got != want {
			t.Errorf("CleanName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "   ", strings.Repeat("x", 101), "a\nb", "a\x00b", "a\u202eb"} {
		if got, err := CleanName(in); err == nil {
			t.Errorf("CleanName(%q) = %q, want an error", in, got)
		}
	}
}

func TestFromContext(t *testing.T) {
	t.Parallel()
	if got := FromContext(WithID(context.Background(), 7)); got != 7 {
		t.Errorf("FromContext = %d, want 7", got)
	}
	defer func() {
		if recover() == nil {
			t.Errorf("FromContext without a tenant did not panic")
		}
	}()
	FromContext(context.Background())
}
