package sealed

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type doc struct {
	Name  string
	Items []int
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.json")
	want := doc{Name: "x", Items: []int{1, 2, 3}}
	if err := Write(path, want); err != nil {
		t.Fatal(err)
	}
	var got doc
	ok, err := Read(path, &got)
	if !ok || err != nil {
		t.Fatalf("Read = %v, %v", ok, err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("round trip (-want +got):\n%s", d)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
}

func TestMissing(t *testing.T) {
	var got doc
	ok, err := Read(filepath.Join(t.TempDir(), "none"), &got)
	if ok || err != nil {
		t.Fatalf("Read(missing) = %v, %v; want false, nil", ok, err)
	}
}

func TestCorruptionDetected(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.json")
	if err := Write(path, doc{Name: "abcdef", Items: []int{7}}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	cases := map[string][]byte{
		"flipped byte": flip(raw, len(raw)-12),
		"truncated":    raw[:len(raw)/2],
		"empty":        {},
		"not json":     []byte("hello"),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			got := doc{Name: "untouched"}
			ok, err := Read(path, &got)
			if ok || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Read = %v, %v; want ErrCorrupt", ok, err)
			}
			if got.Name != "untouched" {
				t.Fatalf("a corrupt file changed the value: %+v", got)
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x01
	return c
}
