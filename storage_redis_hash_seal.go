package gfsession

import (
	"encoding/binary"
	"time"

	"github.com/gogf/gf/v2/errors/gerror"
)

// sealName returns the name a value of key `key` of a session created at
// `created` is sealed under (authenticated with, beside the session id): the
// key, a NUL and the creation time in 8 bytes. The creation time has a fixed
// size at the end, so no two keys and times give one name; a value moved to
// another key, or a creation time edited to extend MaxLifetime, does not
// open.
func sealName(key string, created time.Time) string {
	var b [9]byte
	binary.BigEndian.PutUint64(b[1:], uint64(created.UnixMilli()))
	return key + string(b[:])
}

// manifestMagic starts a stored manifest.
const manifestMagic = "\xF5M"

// sealManifest returns the stored manifest of session `id` created at
// `created` whose value fields are `entries` (field -> tag of its sealed
// value): the magic and, sealed with the first crypto key and authenticated
// with the magic, the id and the creation time, each field as a uvarint
// length, the field and its 16-byte tag.
func (s *StorageRedisHash) sealManifest(id string, created time.Time, entries map[string]string) string {
	size := 0
	for f := range entries {
		size += binary.MaxVarintLen32 + len(f) + tagSize
	}
	plain := make([]byte, 0, size)
	for f, tag := range entries {
		plain = binary.AppendUvarint(plain, uint64(len(f)))
		plain = append(append(plain, f...), tag...)
	}
	return string(s.r.env.keys.seal([]byte(manifestMagic), plain, manifestAAD(id, created)))
}

// openManifest reverses sealManifest.
func (s *StorageRedisHash) openManifest(id string, created time.Time, stored string) (map[string]string, error) {
	if created.IsZero() || len(stored) < len(manifestMagic) || stored[:len(manifestMagic)] != manifestMagic {
		return nil, errCorrupt("no valid manifest")
	}
	plain, err := s.r.env.keys.open([]byte(stored[len(manifestMagic):]), manifestAAD(id, created))
	if err != nil {
		return nil, err
	}
	entries := make(map[string]string)
	for len(plain) > 0 {
		n, w := binary.Uvarint(plain)
		if w <= 0 || uint64(len(plain)-w) < n+tagSize {
			return nil, errCorrupt("manifest truncated")
		}
		plain = plain[w:]
		entries[string(plain[:n])] = string(plain[n : n+tagSize])
		plain = plain[n+tagSize:]
	}
	return entries, nil
}

// checkManifest opens the manifest of session `id`'s hash `fields`, created
// at `created`, and checks that the hash's value fields are exactly the ones
// it lists, each with its tag. It returns the manifest's entries.
func (s *StorageRedisHash) checkManifest(id string, fields map[string]string, created time.Time) (map[string]string, error) {
	manifest, ok := fields[hashManifestField]
	if !ok {
		return nil, errCorrupt("sealed session without a manifest")
	}
	entries, err := s.openManifest(id, created, manifest)
	if err != nil {
		return nil, gerror.Wrap(err, "manifest (or creation time) tampered with")
	}
	n := 0
	for field, raw := range fields {
		if _, ok := hashKey(field); !ok {
			continue
		}
		n++
		if tag, ok := entries[field]; !ok || len(raw) < tagSize || raw[len(raw)-tagSize:] != tag {
			return nil, errCorrupt("fields differ from the manifest (added, replaced or copied)")
		}
	}
	if n != len(entries) {
		return nil, errCorrupt("fields differ from the manifest (deleted)")
	}
	return entries, nil
}

// manifestTag returns the tag of stored manifest `stored`, which tells its
// versions apart, or "" for none: a manifest shorter than a tag has none,
// as hashSealedWriteScript sees it.
func manifestTag(stored string) string {
	if len(stored) < tagSize {
		return ""
	}
	return stored[len(stored)-tagSize:]
}

// manifestAAD returns what a manifest is authenticated with besides its
// content: the magic, the session id and the creation time.
func manifestAAD(id string, created time.Time) []byte {
	aad := make([]byte, 0, len(manifestMagic)+len(id)+9)
	aad = append(append(aad, manifestMagic...), id...)
	return binary.BigEndian.AppendUint64(append(aad, 0), uint64(created.UnixMilli()))
}

// sealValues returns the field/value pairs `set` sealed anew for session
// `id` created at `created`, from the values `values` of their keys.
func (s *StorageRedisHash) sealValues(id string, set []any, values map[string]any, created time.Time) ([]any, error) {
	out := make([]any, 0, len(set))
	for i := 0; i+1 < len(set); i += 2 {
		key, ok := hashKey(set[i].(string))
		if !ok {
			out = append(out, set[i], set[i+1]) // hashUserIndexField: not sealed
			continue
		}
		stored, err := s.encodeValue(id, key, created, values[key])
		if err != nil {
			return nil, err
		}
		out = append(out, set[i], stored)
	}
	return out, nil
}
