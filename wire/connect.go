package wire

import (
	"encoding/json"
	"strconv"
)

// AppendConnectEvent appends the connect event for ev to dst: the bytes
// AppendJSONEvent(dst, EventConnect, ev) appends, written without
// encoding/json's reflection and allocations (a dial's stream write is on
// its critical path).
func AppendConnectEvent(dst []byte, ev ConnectEvent) []byte {
	dst = append(dst, "event: "+EventConnect+"\ndata: {\"token\":"...)
	dst = appendJSONString(dst, ev.Token)
	dst = append(dst, ",\"client\":"...)
	dst = appendJSONString(dst, ev.Client)
	dst = append(dst, ",\"client_addr\":"...)
	dst = appendJSONString(dst, ev.ClientAddr)
	dst = append(dst, ",\"callback\":"...)
	dst = appendJSONString(dst, ev.Callback)
	dst = append(dst, ",\"deadline_ms\":"...)
	dst = strconv.AppendInt(dst, ev.DeadlineUnixMilli, 10)
	return append(dst, "}\n\n"...)
}

// appendJSONString appends s as encoding/json writes a string: quoted
// as is when it is printable ASCII with nothing to escape (the relay's
// names, tokens, paths and addresses), through encoding/json otherwise.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20, c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			b, _ := json.Marshal(s) // a string always encodes
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
