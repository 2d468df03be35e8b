package auth

import (
	"bytes"
	"testing"
)

func TestSealer(t *testing.T) {
	t.Parallel()
	s, err := NewSealer("0123456789abcdef0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	secret, aad := []byte("hrs_secret"), []byte("sk_1")
	sealed := s.Seal(secret, aad)
	if bytes.Contains(sealed, secret) {
		t.Fatalf("sealed value %x contains the plaintext", sealed)
	}
	if got, err := s.Open(sealed, aad); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v; want %q", got, err, secret)
	}
	if again := s.Seal(secret, aad); bytes.Equal(again, sealed) {
		t.Errorf("two seals of one secret are equal; the nonce is not random")
	}

	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	other, _ := NewSealer("another master secret of 32 chars!")
	for name, open := range map[string]func() ([]byte, error){
		"tampered":   func() ([]byte, error) { return s.Open(tampered, aad) },
		"other row":  func() ([]byte, error) { return s.Open(sealed, []byte("sk_2")) },
		"other key":  func() ([]byte, error) { return other.Open(sealed, aad) },
		"too short":  func() ([]byte, error) { return s.Open(sealed[:5], aad) },
		"empty seal": func() ([]byte, error) { return s.Open(nil, aad) },
	} {
		if got, err := open(); err == nil {
			t.Errorf("Open(%s) = %q, nil; want an error", name, got)
		}
	}
	if _, err := NewSealer(""); err == nil {
		t.Errorf("NewSealer(\"\") succeeded")
	}
}
