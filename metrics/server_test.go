package metrics

import "testing"

func TestConnCap(t *testing.T) {
	for _, tt := range []struct {
		maxConns int
		nofile   uint64
		want     int
	}{
		{64, 65536, 64},
		{64, 256, 32},
		{64, 64, 8},
		{64, 7, 1},
		{1, 1 << 20, 1},
	} {
		if got := connCap(tt.maxConns, tt.nofile); got != tt.want {
			t.Errorf("connCap(%d, %d) = %d, want %d", tt.maxConns, tt.nofile, got, tt.want)
		}
	}
}
