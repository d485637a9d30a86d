package layout

import "strings"

// Compression is how an input file is compressed, named by its extension
// without the dot ("" for none).
type Compression string

// The compressions the layout knows, by extension.
const (
	None  Compression = ""
	Gzip  Compression = "gz"
	Xz    Compression = "xz"
	Lzma  Compression = "lzma" // legacy LZMA "alone" format
	Zstd  Compression = "zst"
	Bzip2 Compression = "bz2"
)

func knownExt(ext string) bool {
	switch Compression(ext) {
	case Gzip, Xz, Lzma, Zstd, Bzip2:
		return true
	}
	return false
}

// CompressionOf returns the compression of a key by its extension; keys
// with any other extension, or none, are not compressed.
func CompressionOf(key string) Compression {
	base := key[strings.LastIndexByte(key, '/')+1:]
	i := strings.LastIndexByte(base, '.')
	if i < 0 {
		return None
	}
	if ext := base[i+1:]; knownExt(ext) {
		return Compression(ext)
	}
	return None
}

// String names the compression for people: "gzip", "xz", "lzma", "zstd",
// "bzip2" or "none".
func (c Compression) String() string {
	switch c {
	case Gzip:
		return "gzip"
	case Xz:
		return "xz"
	case Lzma:
		return "lzma"
	case Zstd:
		return "zstd"
	case Bzip2:
		return "bzip2"
	}
	return "none"
}
