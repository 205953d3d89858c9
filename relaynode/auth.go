package relaynode

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"
)

// The auth file grants tokens to names. One rule a line:
//
//	# comment
//	register <name-glob> <sha256-hex-of-token>
//	dial     <name-glob> <sha256-hex-of-token>
//	<name-glob> <sha256-hex-of-token>          (same as register)
//
// Globs are path.Match patterns over names ("api-*", "billing"). A
// registration of a name needs a bearer token whose SHA-256 matches a
// register rule covering the name. A name covered by any dial rule needs a
// matching bearer token on every dial. Only hashes are stored: the file
// does not reveal the tokens.

// authRule is one line of the auth file.
type authRule struct {
	glob string
	sum  [sha256.Size]byte
}

// authRules is a parsed auth file. It is immutable once built.
type authRules struct {
	register []authRule
	dial     []authRule
}

// loadAuthFile reads and parses the auth file at p.
func loadAuthFile(p string) (*authRules, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("relaynode: auth file: %w", err)
	}
	defer f.Close()
	a, err := parseAuth(f)
	if err != nil {
		return nil, fmt.Errorf("relaynode: auth file %s: %w", p, err)
	}
	return a, nil
}

const maxAuthLine = 4096

func parseAuth(r io.Reader) (*authRules, error) {
	a := &authRules{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxAuthLine)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		f := strings.Fields(text)
		kind := "register"
		if len(f) == 3 {
			kind, f = f[0], f[1:]
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want [register|dial] <name-glob> <sha256-hex>", line)
		}
		if _, err := path.Match(f[0], ""); err != nil {
			return nil, fmt.Errorf("line %d: bad glob %q: %w", line, f[0], err)
		}
		var rule authRule
		rule.glob = f[0]
		if b, err := hex.DecodeString(f[1]); err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("line %d: want 64 hex digits of SHA-256, got %q", line, f[1])
		} else {
			copy(rule.sum[:], b)
		}
		switch kind {
		case "register":
			a.register = append(a.register, rule)
		case "dial":
			a.dial = append(a.dial, rule)
		default:
			return nil, fmt.Errorf("line %d: unknown rule %q (want register or dial)", line, kind)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return a, nil
}

// check reports whether token is granted name by one of rules, and
// whether any rule covers name at all. Every covering rule is compared in
// constant time, so the answer's timing does not say which rule matched.
func check(rules []authRule, name, token string) (covered, granted bool) {
	sum := sha256.Sum256([]byte(token))
	for i := range rules {
		if ok, _ := path.Match(rules[i].glob, name); !ok {
			continue
		}
		covered = true
		if token != "" && subtle.ConstantTimeCompare(sum[:], rules[i].sum[:]) == 1 {
			granted = true
		}
	}
	return covered, granted
}

// bearer returns the bearer token of r, or "".
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// certCovers reports whether r came with a verified client certificate
// whose DNS SANs cover name (exactly, or as a path.Match glob).
func certCovers(r *http.Request, name string) bool {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return false
	}
	for _, san := range r.TLS.VerifiedChains[0][0].DNSNames {
		if ok, _ := path.Match(san, name); ok {
			return true
		}
	}
	return false
}

// errAuthMissing and errAuthDenied are the two ways a request fails auth:
// 401 without credentials, 403 with credentials that do not cover it.
var (
	errAuthMissing = errors.New("credentials required")
	errAuthDenied  = errors.New("credentials do not cover this name")
)

// authMode reports whether registrations must authenticate.
func (n *Node) authMode() bool {
	return n.auth.Load() != nil || n.requireClientCert
}

// authorizeRegister decides a registration of name. It returns whether
// the registration is authenticated (and may join the name's group), or an
// error when it must be refused.
func (n *Node) authorizeRegister(r *http.Request, name string) (bool, error) {
	if !n.authMode() {
		return false, nil // open mode
	}
	if certCovers(r, name) {
		return true, nil
	}
	tok := bearer(r)
	if rules := n.auth.Load(); rules != nil {
		if _, granted := check(rules.register, name, tok); granted {
			return true, nil
		}
	}
	if tok == "" && (r.TLS == nil || len(r.TLS.PeerCertificates) == 0) {
		return false, errAuthMissing
	}
	return false, errAuthDenied
}

// authorizeDial decides a dial of name under the dial rules.
func (n *Node) authorizeDial(r *http.Request, name string) error {
	rules := n.auth.Load()
	if rules == nil || len(rules.dial) == 0 {
		return nil
	}
	tok := bearer(r)
	covered, granted := check(rules.dial, name, tok)
	switch {
	case !covered, granted:
		return nil
	case tok == "":
		return errAuthMissing
	default:
		return errAuthDenied
	}
}

// ReloadAuth reads the Config's AuthFile again and swaps the new rules in
// atomically; requests in flight finish under the old ones. On error the
// old rules stay. It is what the binary does on SIGHUP.
func (n *Node) ReloadAuth() error {
	if n.cfg.AuthFile == "" {
		return errors.New("relaynode: no AuthFile configured")
	}
	a, err := loadAuthFile(n.cfg.AuthFile)
	if err != nil {
		return err
	}
	n.auth.Store(a)
	return nil
}

// refuseAuth answers an auth failure: 401 with a challenge, or 403.
func refuseAuth(w http.ResponseWriter, err error) {
	if errors.Is(err, errAuthMissing) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="clusterlink-relay"`)
		refuse(w, http.StatusUnauthorized, err.Error())
		return
	}
	refuse(w, http.StatusForbidden, err.Error())
}
