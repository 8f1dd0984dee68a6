package service

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestChunk(t *testing.T) {
	tests := []struct {
		name string
		in   string
		size int
		want int // number of chunks; -1 = don't check
	}{
		{"empty", "", 10, 0},
		{"blank paragraphs", "\n\n  \n\n", 10, 0},
		{"one short", "hello world", 100, 1},
		{"two paragraphs", "first para.\n\nsecond para.", 100, 2},
		{"long words", strings.Repeat("word ", 100), 50, -1},
		{"no spaces", strings.Repeat("x", 95), 10, 10},
		{"multibyte", strings.Repeat("ä€𝄞", 50), 7, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Chunk(tt.in, tt.size)
			if tt.want >= 0 && len(got) != tt.want {
				t.Fatalf("got %d chunks %q, want %d", len(got), got, tt.want)
			}
			for _, c := range got {
				if len(c) > tt.size || c == "" || !utf8.ValidString(c) {
					t.Fatalf("bad chunk %q (len %d, size %d)", c, len(c), tt.size)
				}
			}
			if strings.Join(strings.Fields(strings.Join(got, " ")), "") != strings.Join(strings.Fields(tt.in), "") {
				t.Fatalf("chunks lost or changed text")
			}
		})
	}
}

func FuzzChunk(f *testing.F) {
	f.Add("hello. world\n\nnext", 8)
	f.Add(strings.Repeat("ä€𝄞 ", 9), 5)
	f.Fuzz(func(t *testing.T, in string, size int) {
		if size < 4 || size > 4096 || !utf8.ValidString(in) {
			return
		}
		for _, c := range Chunk(in, size) {
			if len(c) > size || !utf8.ValidString(c) {
				t.Fatalf("bad chunk %q", c)
			}
		}
	})
}
