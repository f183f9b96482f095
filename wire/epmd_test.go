package wire

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// captureNames is a NAMES reply from epmd (OTP 25.2.3) started with
// -port 14369, with one node foo@127.0.0.1 registered.
var captureNames = []byte("\x00\x00\x38\x21name foo at port 36247\n")

func TestAppendNamesRequest(t *testing.T) {
	if got, want := AppendNamesRequest(nil), []byte{0x00, 0x01, 0x6e}; !bytes.Equal(got, want) {
		t.Fatalf("got %x, want %x", got, want)
	}
}

func TestParseNames(t *testing.T) {
	tests := []struct {
		name  string
		reply []byte
		want  Names
		err   error
	}{
		{"capture", captureNames, Names{14369, []EpmdNode{{"foo", 36247}}}, nil},
		{"no nodes", []byte{0, 0, 0x11, 0x11}, Names{EpmdPort: 4369}, nil},
		{"two nodes", []byte("\x00\x00\x11\x11name a at port 1\nname rpc-1f2e-myapp at port 65535\n"),
			Names{4369, []EpmdNode{{"a", 1}, {"rpc-1f2e-myapp", 65535}}}, nil},
		{"last line cut", []byte("\x00\x00\x11\x11name a at port 9100"),
			Names{4369, []EpmdNode{{"a", 9100}}}, nil},
		{"name with spaces", []byte("\x00\x00\x11\x11name x at port y at port 7\n"),
			Names{4369, []EpmdNode{{"x at port y", 7}}}, nil},
		{"empty", nil, Names{}, ErrNamesShort},
		{"three bytes", []byte{0, 0, 0x11}, Names{}, ErrNamesShort},
		{"port too big", []byte("\x00\x00\x11\x11name a at port 65536\n"), Names{EpmdPort: 4369}, ErrNamesLine},
		{"no port", []byte("\x00\x00\x11\x11name a at port \n"), Names{EpmdPort: 4369}, ErrNamesLine},
		{"empty name", []byte("\x00\x00\x11\x11name  at port 5\n"), Names{EpmdPort: 4369}, ErrNamesLine},
		{"dump format", []byte("\x00\x00\x11\x11active name     <a> at port 5, fd = 7\n"), Names{EpmdPort: 4369}, ErrNamesLine},
		{"good then bad", []byte("\x00\x00\x11\x11name a at port 5\nHTTP/1.1 400\n"),
			Names{4369, []EpmdNode{{"a", 5}}}, ErrNamesLine},
		{"blank line", []byte("\x00\x00\x11\x11\n"), Names{EpmdPort: 4369}, ErrNamesLine},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseNames(tt.reply)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestAppendNamesRoundTrip(t *testing.T) {
	n := Names{4369, []EpmdNode{{"foo", 36247}, {"app", 9100}}}
	b := AppendNames(nil, n)
	if !bytes.Equal(AppendNames(nil, Names{14369, []EpmdNode{{"foo", 36247}}}), captureNames) {
		t.Fatalf("AppendNames does not reproduce the capture")
	}
	got, err := ParseNames(b)
	if err != nil || !reflect.DeepEqual(got, n) {
		t.Fatalf("got %+v, %v; want %+v", got, err, n)
	}
}

// FuzzParseNames checks that whatever ParseNames accepts re-encodes to a
// reply that parses to the same nodes, and that every node it returns has a
// non-empty name without a newline.
func FuzzParseNames(f *testing.F) {
	f.Add(captureNames)
	f.Add([]byte{0, 0, 0x11, 0x11})
	f.Add([]byte("\x00\x00\x11\x11name x at port y at port 7\nname b at port 1"))
	f.Add([]byte("\x00\x00\x11\x11name a at port 65536\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ParseNames(b)
		for _, nd := range n.Nodes {
			if nd.Name == "" || bytes.ContainsRune([]byte(nd.Name), '\n') {
				t.Fatalf("bad node name %q", nd.Name)
			}
		}
		if err != nil {
			return
		}
		again, err := ParseNames(AppendNames(nil, n))
		if err != nil || !reflect.DeepEqual(again, n) {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, n)
		}
	})
}
