package wire

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
)

// TokenBytes is the number of random bytes in a token: 128 bits.
const TokenBytes = 16

// TokenLen is the length of a token's canonical text: unpadded base64url.
const TokenLen = 22

// Token is a 128-bit secret from crypto/rand. Tokens name one callback
// (connect tokens) or one registration (registration ids). The zero Token
// is never minted and never parses.
type Token [TokenBytes]byte

var tokenEncoding = base64.RawURLEncoding.Strict()

// NewToken mints a token from crypto/rand. Tokens are independent: a used
// token says nothing about any other.
func NewToken() Token {
	var t Token
	// crypto/rand.Read never returns an error on supported platforms and
	// crashes the program irrecoverably if the kernel fails it.
	_, _ = rand.Read(t[:])
	return t
}

// String returns the canonical text: 22 characters of unpadded base64url.
func (t Token) String() string {
	var b [TokenLen]byte
	tokenEncoding.Encode(b[:], t[:])
	return string(b[:])
}

// AppendText appends the canonical text to dst.
func (t Token) AppendText(dst []byte) ([]byte, error) {
	n := len(dst)
	dst = append(dst, make([]byte, TokenLen)...)
	tokenEncoding.Encode(dst[n:], t[:])
	return dst, nil
}

// IsZero reports whether t is the zero Token.
func (t Token) IsZero() bool { return t == Token{} }

// ParseToken parses a token's canonical text. It rejects any other length,
// padding, non-canonical trailing bits and the zero token. It does not
// allocate for a valid token; a rejection allocates its error.
func ParseToken(s string) (Token, error) {
	var t Token
	if len(s) != TokenLen {
		return t, fmt.Errorf("%w: length %d, want %d", ErrBadToken, len(s), TokenLen)
	}
	var src [TokenLen]byte
	copy(src[:], s)
	n, err := tokenEncoding.Decode(t[:], src[:])
	if err != nil || n != TokenBytes {
		return Token{}, fmt.Errorf("%w: not base64url", ErrBadToken)
	}
	if t.IsZero() {
		return t, fmt.Errorf("%w: zero", ErrBadToken)
	}
	return t, nil
}
