package auth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// Sealer encrypts secrets at rest with AES-256-GCM under a key derived from
// the service's SECRET_KEY.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer derives the sealing key from master with HKDF-SHA256.
func NewSealer(master string) (*Sealer, error) {
	if master == "" {
		return nil, errors.New("auth: empty master secret")
	}
	key, err := hkdf.Key(sha256.New, []byte(master), nil, "hybridrt signing-key seal v1", 32)
	if err != nil {
		return nil, fmt.Errorf("auth: derive sealing key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("auth: sealing cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("auth: sealing cipher: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts plaintext, binding it to aad (the row it belongs to), and
// returns nonce || ciphertext.
func (s *Sealer) Seal(plaintext, aad []byte) []byte {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	_, _ = rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plaintext, aad)
}

// Open reverses Seal. It fails when sealed was altered, belongs to another
// aad, or was sealed under another SECRET_KEY.
func (s *Sealer) Open(sealed, aad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("auth: sealed value too short")
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], aad)
	if err != nil {
		return nil, errors.New("auth: cannot open sealed secret (was SECRET_KEY changed?)")
	}
	return plain, nil
}
