package wire_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/clusterlink-relay/relay/wire"
)

const b64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// validToken returns the text of a freshly minted token.
func validToken(tb testing.TB) string {
	tb.Helper()
	s := wire.NewToken().String()
	if len(s) != wire.TokenLen {
		tb.Fatalf("NewToken().String() = %q: length %d, want %d", s, len(s), wire.TokenLen)
	}
	return s
}

func TestTokenRoundTrip(t *testing.T) {
	for range 100 {
		tok := wire.NewToken()
		s := tok.String()
		if len(s) != wire.TokenLen {
			t.Fatalf("String() = %q: length %d, want %d", s, len(s), wire.TokenLen)
		}
		got, err := wire.ParseToken(s)
		if err != nil {
			t.Fatalf("ParseToken(%q): %v", s, err)
		}
		if got != tok {
			t.Fatalf("ParseToken(%q) = %x, want %x", s, got, tok)
		}
	}
}

func TestTokenKnownText(t *testing.T) {
	var tok wire.Token
	for i := range tok {
		tok[i] = byte(0xf0 + i)
	}
	// Bytes f0..ff in unpadded base64url, computed independently.
	const want = "8PHy8_T19vf4-fr7_P3-_w"
	if got := tok.String(); got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	got, err := wire.ParseToken(want)
	if err != nil || got != tok {
		t.Fatalf("ParseToken(%q) = %x, %v; want %x, nil", want, got, err, tok)
	}
}

func TestNewTokenDistinct(t *testing.T) {
	const n = 1000
	seen := make(map[wire.Token]bool, n)
	for range n {
		tok := wire.NewToken()
		if tok.IsZero() {
			t.Fatal("NewToken returned the zero token")
		}
		if seen[tok] {
			t.Fatalf("NewToken returned %s twice", tok)
		}
		seen[tok] = true
	}
}

func TestTokenIsZero(t *testing.T) {
	if !(wire.Token{}).IsZero() {
		t.Error("Token{}.IsZero() = false")
	}
	var tok wire.Token
	tok[wire.TokenBytes-1] = 1
	if tok.IsZero() {
		t.Error("IsZero() = true for a non-zero token")
	}
}

func TestTokenAppendText(t *testing.T) {
	tok := wire.NewToken()
	got, err := tok.AppendText(nil)
	if err != nil {
		t.Fatalf("AppendText(nil): %v", err)
	}
	if string(got) != tok.String() {
		t.Fatalf("AppendText(nil) = %q, want %q", got, tok.String())
	}
	prefix := []byte("token=")
	got, err = tok.AppendText(prefix)
	if err != nil {
		t.Fatalf("AppendText(prefix): %v", err)
	}
	if want := "token=" + tok.String(); string(got) != want {
		t.Fatalf("AppendText(prefix) = %q, want %q", got, want)
	}
}

// nonCanonical returns s with its last character replaced by one that
// decodes to the same bytes under non-strict decoding: the last character
// of a 22-character token carries 2 data bits and 4 bits that must be zero.
func nonCanonical(tb testing.TB, s string) string {
	tb.Helper()
	last := strings.IndexByte(b64url, s[len(s)-1])
	if last < 0 || last&0xf != 0 {
		tb.Fatalf("token %q: last char %q is not canonical", s, s[len(s)-1])
	}
	return s[:len(s)-1] + string(b64url[last|1])
}

func TestParseTokenRejects(t *testing.T) {
	good := validToken(t)
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"len21", good[:21]},
		{"len23", good + "A"},
		{"len24 padded", good + "=="},
		{"plus", "+" + good[1:]},
		{"slash", good[:5] + "/" + good[6:]},
		{"equals", good[:21] + "="},
		{"space", good[:10] + " " + good[11:]},
		{"LF", good[:10] + "\n" + good[11:]},
		{"CR", good[:21] + "\r"},
		{"CRLF", good[:20] + "\r\n"},
		{"NUL", good[:21] + "\x00"},
		{"non-ASCII", good[:20] + "é"},
		{"high byte", good[:21] + "\xff"},
		{"std base64 padded", "AAAAAAAAAAAAAAAAAAAAAQ=="},
		{"non-canonical trailing bits", nonCanonical(t, good)},
		{"non-canonical zero", "AAAAAAAAAAAAAAAAAAAAAB"},
		{"zero", "AAAAAAAAAAAAAAAAAAAAAA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := wire.ParseToken(tt.in)
			if err == nil {
				t.Fatalf("ParseToken(%q) = %s, nil; want error", tt.in, tok)
			}
			if !errors.Is(err, wire.ErrBadToken) {
				t.Fatalf("ParseToken(%q) error %v does not wrap ErrBadToken", tt.in, err)
			}
			if !tok.IsZero() {
				t.Fatalf("ParseToken(%q) returned non-zero token %x with error", tt.in, tok)
			}
		})
	}
}

// TestParseTokenEveryLastChar checks that exactly the four canonical last
// characters (low four bits zero) are accepted.
func TestParseTokenEveryLastChar(t *testing.T) {
	good := validToken(t)
	accepted := 0
	for i := range len(b64url) {
		s := good[:21] + string(b64url[i])
		_, err := wire.ParseToken(s)
		if canonical := i&0xf == 0; canonical != (err == nil) {
			t.Errorf("ParseToken(%q) error = %v, canonical = %v", s, err, canonical)
		}
		if err == nil {
			accepted++
		}
	}
	if accepted != 4 {
		t.Errorf("accepted %d last characters, want 4", accepted)
	}
}

func TestTokenAllocs(t *testing.T) {
	tok := wire.NewToken()
	s := tok.String()
	if n := testing.AllocsPerRun(100, func() {
		if _, err := wire.ParseToken(s); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("ParseToken: %v allocs per run, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		_ = tok.String()
	}); n > 1 {
		t.Errorf("String: %v allocs per run, want at most 1", n)
	}
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() {
		_, _ = tok.AppendText(buf[:0])
	}); n != 0 {
		t.Errorf("AppendText with capacity: %v allocs per run, want 0", n)
	}
}

func FuzzParseToken(f *testing.F) {
	for range 4 {
		f.Add(wire.NewToken().String())
	}
	f.Add("8PHy8_T19vf4-fr7_P3-_w")
	f.Add("AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("AAAAAAAAAAAAAAAAAAAAAB")
	f.Add("AAAAAAAAAAAAAAAAAAAAAQ==")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := wire.ParseToken(s)
		if err != nil {
			if !errors.Is(err, wire.ErrBadToken) {
				t.Fatalf("ParseToken(%q) error %v does not wrap ErrBadToken", s, err)
			}
			return
		}
		if tok.IsZero() {
			t.Fatalf("ParseToken(%q) accepted the zero token", s)
		}
		if got := tok.String(); got != s {
			t.Fatalf("ParseToken(%q).String() = %q", s, got)
		}
	})
}

func BenchmarkNewToken(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = wire.NewToken()
	}
}

func BenchmarkParseToken(b *testing.B) {
	s := wire.NewToken().String()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := wire.ParseToken(s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTokenString(b *testing.B) {
	tok := wire.NewToken()
	b.ReportAllocs()
	for b.Loop() {
		_ = tok.String()
	}
}
