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
	var flags byte
	md5, err := hex.DecodeString(etag)
	if err == nil && len(md5) == 16 && hex.EncodeToString(md5) == etag {
		flags |= flagMD5
	}
	dst = append(dst, flags)
	dst = binary.AppendUvarint(dst, uint64(size))
	dst = binary.AppendVarint(dst, mtime.UnixMilli())
	if flags&flagMD5 != 0 {
		return append(dst, md5...)
	}
	dst = binary.AppendUvarint(dst, uint64(len(etag)))
	return append(dst, etag...)
}

var errBadValue = errors.New("damaged object record in the index")

func decodeValue(v []byte) (size int64, etag string, mtime time.Time, err error) {
	if len(v) < 1 {
		return 0, "", time.Time{}, errBadValue
	}
	flags := v[0]
	v = v[1:]
	s, n := binary.Uvarint(v)
	if n <= 0 {
		return 0, "", time.Time{}, errBadValue
	}
	v = v[n:]
	ms, n := binary.Varint(v)
	if n <= 0 {
		return 0, "", time.Time{}, errBadValue
	}
	v = v[n:]
	if flags&flagMD5 != 0 {
		if len(v) != 16 {
			return 0, "", time.Time{}, errBadValue
		}
		etag = hex.EncodeToString(v)
	} else {
		l, n := binary.Uvarint(v)
		if n <= 0 || uint64(len(v)-n) != l {
			return 0, "", time.Time{}, errBadValue
		}
		etag = string(v[n:])
	}
	return int64(s), etag, time.UnixMilli(ms).UTC(), nil
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
