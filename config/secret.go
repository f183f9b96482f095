package config

import (
	"bytes"
	"fmt"
	"io"

	"github.com/distgate/distgate/internal/safefile"
)

// Secret holds a secret such as a cookie. It prints as "(secret)" with
// every fmt verb, in JSON and as text, so a Compiled logged or printed by
// mistake shows nothing of it. Use it as a []byte to read the bytes.
type Secret []byte

const redacted = "(secret)"

func (Secret) String() string   { return redacted }
func (Secret) GoString() string { return redacted }

// Format prints "(secret)" for every verb, %x and %d included (a []byte
// with only a String method would print its bytes for %d).
func (Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// MarshalText keeps the bytes out of JSON and TOML.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// maxCookie is the longest cookie: an Erlang cookie is an atom, at most
// 255 characters.
const maxCookie = 255

// readCookie reads a cookie file: a regular file readable by its owner only,
// its content with surrounding whitespace trimmed. Errors name the path and
// what is wrong, never the content.
func readCookie(path string) (Secret, error) {
	// Read a little past maxCookie so that trailing whitespace and
	// newlines fit, and a large file is refused without being read.
	b, err := safefile.ReadPrivate(path, 4<<10)
	if err != nil {
		return nil, err
	}
	c := bytes.TrimSpace(b)
	switch {
	case len(c) == 0:
		return nil, fmt.Errorf("%q is empty", path)
	case len(c) > maxCookie:
		return nil, fmt.Errorf("%q holds %d bytes; a cookie is an atom of at most %d characters", path, len(c), maxCookie)
	}
	for _, ch := range c {
		// Erlang's own cookie file takes printable ASCII only; a line
		// break inside means the file holds more than the cookie.
		if ch < 0x20 || ch > 0x7e {
			return nil, fmt.Errorf("%q holds a byte that is not printable ASCII (a cookie is one line of printable ASCII)", path)
		}
	}
	return Secret(c), nil
}
