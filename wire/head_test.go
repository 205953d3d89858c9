package wire

import (
	"bufio"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// TestParseRequestHead checks the plain heads the lean path takes and
// a sample of the ones it must leave to net/http.
func TestParseRequestHead(t *testing.T) {
	ok := "POST /v1/dial/echo HTTP/1.1\r\nHost: 127.0.0.1:80\r\nConnection: Upgrade\r\nUpgrade: " + UpgradeProtocol + "\r\nrelay-client-name: c1\r\n\r\n"
	h, good := ParseRequestHead(ok)
	if !good {
		t.Fatalf("plain dial head refused")
	}
	if h.Method != "POST" || h.Target != "/v1/dial/echo" || h.Host != "127.0.0.1:80" || h.Close {
		t.Fatalf("parsed %+v", h)
	}
	want := http.Header{"Connection": {"Upgrade"}, "Upgrade": {UpgradeProtocol}, "Relay-Client-Name": {"c1"}}
	if !reflect.DeepEqual(h.Header, want) {
		t.Fatalf("headers %v, want %v", h.Header, want)
	}
	if h, good := ParseRequestHead("POST /v1/park/x HTTP/1.1\r\nHost: a\r\nConnection: upgrade, Close\r\n\r\n"); !good || !h.Close {
		t.Fatalf("Connection: close not seen: %+v %v", h, good)
	}
	for _, bad := range []string{
		"",
		"\r\n\r\n",
		"POST /v1/dial/x HTTP/1.0\r\nHost: a\r\n\r\n",
		"POST /v1/dial/x HTTP/1.1\r\n\r\n", // no Host
		"POST /v1/dial/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"POST /v1/dial/x?q=1 HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /v1/dial/%78 HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST http://a/v1/dial/x HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST  /v1/dial/x HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /v1/dial/x HTTP/1.1\nHost: a\n\n",
		"POST /v1/dial/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n",
		"POST /v1/dial/x HTTP/1.1\r\nHost: a\r\nContent-Length: 00\r\n\r\n",
		"POST /v1/dial/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST /v1/dial/x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
		"POST /v1/dial/x HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n",
		"POST /v1/dial/x HTTP/1.1\r\nHost: a\r\nX : 1\r\n\r\n",
		"POST /v1/dial/x HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n",
		"POST /v1/dial/x HTTP/1.1\r\nHost: a\r\nX: 1\r\nx: 2\r\n\r\n",
		"POST /v1/dial/x HTTP/1.1\r\nHost: a b\r\n\r\n",
		"POST /v1/dial/x HTTP/1.1\r\nHost: a\r\n\r\nextra",
		"PO(ST /v1/dial/x HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		if _, good := ParseRequestHead(bad); good {
			t.Errorf("took %q", bad)
		}
	}
}

// TestEndOfHead checks where a head ends, and that an unfinished one is
// reported as such.
func TestEndOfHead(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
	}{
		{"", -1}, {"GET / HTTP/1.1\r\n", -1}, {"GET / HTTP/1.1\r\n\r\n", 18}, {"a\r\n\r\nrest", 5}, {"\r\n\r", -1},
	} {
		if got := EndOfHead([]byte(c.in)); got != c.want {
			t.Errorf("EndOfHead(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

// FuzzParseRequestHead checks ParseRequestHead against net/http's
// request reader: whatever it takes, net/http reads too, with the same
// method, path, host and headers.
func FuzzParseRequestHead(f *testing.F) {
	f.Add("POST /v1/dial/echo HTTP/1.1\r\nHost: 127.0.0.1:80\r\nConnection: Upgrade\r\nUpgrade: " + UpgradeProtocol + "\r\n\r\n")
	f.Add("POST /v1/accept/abc HTTP/1.1\r\nHost: [::1]:80\r\nRelay-Registration: x\r\nConnection: close\r\n\r\n")
	f.Add("GET / HTTP/1.1\r\nHost: a\r\nX:\t v \r\n\r\n")
	f.Add("POST /v1/park/p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		end := EndOfHead([]byte(in))
		if end < 0 {
			return
		}
		in = in[:end]
		h, ok := ParseRequestHead(in)
		if !ok {
			return
		}
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(in)))
		if err != nil {
			t.Fatalf("took %q, net/http refuses it: %v", in, err)
		}
		if r.Method != h.Method || r.URL.Path != h.Target || r.URL.RawQuery != "" || r.Host != h.Host || r.ContentLength != 0 || r.Close != h.Close {
			t.Fatalf("%q: net/http reads %s %q (query %q) host %q length %d close %v, we %+v", in, r.Method, r.URL.Path, r.URL.RawQuery, r.Host, r.ContentLength, r.Close, h)
		}
		if !reflect.DeepEqual(r.Header, h.Header) {
			t.Fatalf("%q: net/http headers %v, ours %v", in, r.Header, h.Header)
		}
	})
}

// TestRequestHeadReset checks that a reset head reused for another parse
// holds that parse's headers only.
func TestRequestHeadReset(t *testing.T) {
	var h RequestHead
	if !h.Parse("POST /a HTTP/1.1\r\nHost: a\r\nX-One: 1\r\nX-Two: 2\r\n\r\n") {
		t.Fatal("first head refused")
	}
	h.Reset()
	if !h.Parse("POST /b HTTP/1.1\r\nHost: b\r\nX-Three: 3\r\n\r\n") {
		t.Fatal("second head refused")
	}
	want := http.Header{"X-Three": {"3"}}
	if h.Target != "/b" || h.Host != "b" || !reflect.DeepEqual(h.Header, want) {
		t.Fatalf("after reset: %+v, want target /b, host b, headers %v", h, want)
	}
}
