package index

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"time"
)

// The stored value of an object: a flags byte, the size (uvarint), the
// last-modified time in Unix milliseconds (varint, S3 has no finer
// precision) and the ETag, as 16 raw bytes when it is a plain MD5 in hex
// (the common case) and as a length-prefixed string otherwise.
const flagMD5 = 1

func encodeValue(dst []byte, size int64, etag string, mtime time.Time) []byte {
	etag = strings.Trim(etag, `"`)
	var md5 [16]byte
	isMD5 := len(etag) == 32 && isLowerHex(etag)
	if isMD5 {
		_, _ = hex.Decode(md5[:], []byte(etag))
	}
	var flags byte
	if isMD5 {
		flags |= flagMD5
	}
	dst = append(dst, flags)
	dst = binary.AppendUvarint(dst, uint64(size))
	dst = binary.AppendVarint(dst, mtime.UnixMilli())
	if isMD5 {
		return append(dst, md5[:]...)
	}
	dst = binary.AppendUvarint(dst, uint64(len(etag)))
	return append(dst, etag...)
}

// isLowerHex accepts exactly what hex.EncodeToString writes, so that a
// stored MD5 comes back byte for byte.
func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

var errBadValue = errors.New("damaged object record in the index")

func decodeValue(v []byte) (size int64, etag string, mtime time.Time, err error) {
	size, md5, raw, ms, err := decodeRaw(v)
	if err != nil {
		return 0, "", time.Time{}, err
	}
	if md5 != nil {
		etag = hex.EncodeToString(md5)
	} else {
		etag = string(raw)
	}
	return size, etag, time.UnixMilli(ms).UTC(), nil
}

// decodeRaw splits a stored value without allocating: md5 is set when the
// ETag is a plain MD5, etag otherwise; both point into v.
func decodeRaw(v []byte) (size int64, md5, etag []byte, ms int64, err error) {
	if len(v) < 1 {
		return 0, nil, nil, 0, errBadValue
	}
	flags := v[0]
	v = v[1:]
	s, n := binary.Uvarint(v)
	if n <= 0 {
		return 0, nil, nil, 0, errBadValue
	}
	v = v[n:]
	ms, n = binary.Varint(v)
	if n <= 0 {
		return 0, nil, nil, 0, errBadValue
	}
	v = v[n:]
	if flags&flagMD5 != 0 {
		if len(v) != 16 {
			return 0, nil, nil, 0, errBadValue
		}
		return int64(s), v, nil, ms, nil
	}
	l, n := binary.Uvarint(v)
	if n <= 0 || uint64(len(v)-n) != l {
		return 0, nil, nil, 0, errBadValue
	}
	return int64(s), nil, v[n:], ms, nil
}

// sizeOf reads just the size from a stored value, for sums that need
// nothing else.
func sizeOf(v []byte) int64 {
	if len(v) < 2 {
		return 0
	}
	s, _ := binary.Uvarint(v[1:])
	return int64(s)
}
