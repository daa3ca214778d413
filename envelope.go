package gfsession

import (
	"context"
	"encoding/binary"
	"strings"
	"time"

	"github.com/gogf/gf/v2/crypto/gaes"
	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/net/ghttp"
	"github.com/gogf/gf/v2/os/gsession"
)

// The stored form of a session (docs/design.md, "Data format"):
//
//	0xF5 'G' 'S'   magic (0xF5 never starts valid UTF-8 or JSON)
//	version        1 byte, currently 1
//	flags          1 byte: low 4 bits codec id, 0x10 sealed, 0x20 client,
//	               0x40 written
//	created-at     8 bytes, big-endian Unix milliseconds
//	payload        codec bytes, or, when sealed, key id + nonce + AES-256-GCM
//	               ciphertext authenticated with the 13 header bytes and the
//	               session's handle (a blob copied to another does not open);
//	               the codec bytes (sealed or not) are preceded, with the
//	               written flag, by when the session was written (8 bytes,
//	               big-endian Unix milliseconds), then, with the client
//	               flag, by the client's info: a uvarint length and the
//	               client IP, a NUL byte and the User-Agent
//
// A single value (one field of a Redis hash) is stored as
//
//	0xF5 flags payload
//
// sealed with the session id and the key name as additional data.
const (
	magic0          = 0xF5
	envelopeVersion = 1
	headerSize      = 13
	flagSealed      = 0x10
	flagClient      = 0x20
	flagWritten     = 0x40
	flagCodecMask   = 0x0F
	// maxClientInfo bounds the client info kept with a session: an IP and
	// a User-Agent, cut to fit.
	maxClientInfo = 512
	// maxClientIp bounds the IP part of the client info.
	maxClientIp = 64
)

// envelopeMagic is how every whole-session envelope starts.
const envelopeMagic = "\xF5GS"

// envelope encodes and decodes stored sessions for every backend: codec,
// optional sealing, creation time and the legacy formats of gf's built-ins.
type envelope struct {
	codec valueCodec
	keys  *keyRing
}

func newEnvelope(codecName string, cryptoKeys [][]byte) (*envelope, error) {
	codec, err := codecByName(codecName)
	if err != nil {
		return nil, err
	}
	keys, err := newKeyRing(cryptoKeys)
	if err != nil {
		return nil, err
	}
	return &envelope{codec: codec, keys: keys}, nil
}

func (e *envelope) flags() byte {
	f := e.codec.id()
	if e.keys != nil {
		f |= flagSealed
	}
	return f
}

// encodeSession returns the stored form of session `id` with `data`, created
// at `created`. A value that the codec cannot store so that it comes back
// (see CodecBinary) is an error naming its session key (CodeInvalidParameter).
func (e *envelope) encodeSession(id string, created time.Time, data map[string]any) ([]byte, error) {
	return e.encodeSessionMeta(id, created, data, sessionMeta{})
}

// sessionMeta is what an envelope may keep with a session besides its data.
type sessionMeta struct {
	// client is clientInfo's "ip\x00user-agent", "" for none.
	client string
	// written is when the session was written, zero for not kept: what
	// maxSessionsPerUser knows of a session's activity when MaxLifetime cut
	// its TTL short (see activity).
	written time.Time
}

// encodeSessionMeta is encodeSession keeping `meta` with the session.
func (e *envelope) encodeSessionMeta(id string, created time.Time, data map[string]any, meta sessionMeta) ([]byte, error) {
	buf := make([]byte, headerSize, headerSize+72+len(meta.client)+16*len(data))
	copy(buf, envelopeMagic)
	buf[3], buf[4] = envelopeVersion, e.flags()
	binary.BigEndian.PutUint64(buf[5:], uint64(created.UnixMilli()))
	if meta.client != "" {
		buf[4] |= flagClient
	}
	if !meta.written.IsZero() {
		buf[4] |= flagWritten
	}
	if e.keys == nil {
		return e.codec.encodeMap(appendMeta(buf, meta), data)
	}
	plain, err := e.codec.encodeMap(appendMeta(nil, meta), data)
	if err != nil {
		return nil, err
	}
	aad := append(buf[:headerSize:headerSize], id...)
	return e.keys.seal(buf, plain, aad), nil
}

// decodeSession decodes `stored`, what encodeSession wrote, and gf's legacy
// formats: a JSON object (gf's StorageRedis) and 8 bytes little-endian
// milliseconds followed by JSON, plain or AES-CBC with gf's default key (gf's
// StorageFile). For a legacy blob `created` is the zero time. With
// cryptoKeys configured, only sealed data is accepted: legacy formats carry
// no authentication, so accepting them would let anyone who can write to
// the backend forge a session. Decoded strings may share the memory of
// `stored`.
func (e *envelope) decodeSession(id string, stored string) (data map[string]any, created time.Time, err error) {
	data, created, _, err = e.decodeSessionMeta(id, stored)
	return data, created, err
}

// decodeSessionMeta is decodeSession, also returning what the envelope
// keeps with the session (see sessionMeta).
func (e *envelope) decodeSessionMeta(id string, stored string) (data map[string]any, created time.Time, meta sessionMeta, err error) {
	if len(stored) >= headerSize && strings.HasPrefix(stored, envelopeMagic) {
		data, created, meta, err = e.decodeCurrent(id, stored)
		if err == nil {
			return data, created, meta, nil
		}
		// 1 in 2^24 legacy file blobs starts with these bytes by chance.
		if e.keys == nil {
			if legacy, lerr := decodeLegacy([]byte(stored)); lerr == nil {
				return legacy, time.Time{}, sessionMeta{}, nil
			}
		}
		return nil, time.Time{}, sessionMeta{}, err
	}
	if e.keys != nil {
		return nil, time.Time{}, sessionMeta{}, errCorrupt("unsealed data refused: cryptoKeys are configured")
	}
	data, err = decodeLegacy([]byte(stored))
	return data, time.Time{}, sessionMeta{}, err
}

func (e *envelope) decodeCurrent(id string, stored string) (map[string]any, time.Time, sessionMeta, error) {
	var meta sessionMeta
	if stored[3] != envelopeVersion {
		return nil, time.Time{}, meta, errCorrupt("unknown envelope version")
	}
	flags := stored[4]
	codec := codecById(flags & flagCodecMask)
	if codec == nil || flags&^(flagCodecMask|flagSealed|flagClient|flagWritten) != 0 {
		return nil, time.Time{}, meta, errCorrupt("unknown envelope flags")
	}
	created := time.UnixMilli(int64(binary.BigEndian.Uint64([]byte(stored[5:headerSize]))))
	payload := stored[headerSize:]
	if flags&flagSealed != 0 {
		if e.keys == nil {
			return nil, time.Time{}, meta, errCorrupt("session is sealed but no cryptoKeys are configured")
		}
		aad := make([]byte, 0, headerSize+len(id))
		aad = append(append(aad, stored[:headerSize]...), id...)
		plain, err := e.keys.open([]byte(payload), aad)
		if err != nil {
			return nil, time.Time{}, meta, err
		}
		payload = string(plain)
	} else if e.keys != nil {
		return nil, time.Time{}, meta, errCorrupt("session is not sealed but cryptoKeys are configured")
	}
	if flags&flagWritten != 0 {
		if len(payload) < 8 {
			return nil, time.Time{}, meta, errCorrupt("truncated write time")
		}
		meta.written = time.UnixMilli(int64(binary.BigEndian.Uint64([]byte(payload[:8]))))
		payload = payload[8:]
	}
	if flags&flagClient != 0 {
		n, size := binary.Uvarint([]byte(payload[:min(len(payload), binary.MaxVarintLen64)]))
		if size <= 0 || n > maxClientInfo || uint64(len(payload)-size) < n {
			return nil, time.Time{}, meta, errCorrupt("truncated client info")
		}
		meta.client, payload = payload[size:size+int(n)], payload[size+int(n):]
	}
	v, err := codec.decode(payload)
	if err != nil {
		return nil, time.Time{}, meta, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, time.Time{}, meta, errCorrupt("session is not a map")
	}
	return m, created, meta, nil
}

// appendMeta appends `meta` as the envelope stores it before the codec
// bytes to `buf`: the write time (8 bytes) when kept, then the client info
// (a uvarint length, then the bytes) when there is some.
func appendMeta(buf []byte, meta sessionMeta) []byte {
	if !meta.written.IsZero() {
		buf = binary.BigEndian.AppendUint64(buf, uint64(meta.written.UnixMilli()))
	}
	if meta.client == "" {
		return buf
	}
	buf = binary.AppendUvarint(buf, uint64(len(meta.client)))
	return append(buf, meta.client...)
}

// clientInfo returns what clientInfo keeps of the ghttp request in `ctx`:
// "ip\x00user-agent", or "" outside a request. The IP is ghttp's
// r.GetClientIp, which believes X-Forwarded-For and similar headers: the
// client may have written it, so it is cut to maxClientIp bytes and only
// ever shown, never trusted. The whole is cut to maxClientInfo bytes.
func clientInfo(ctx context.Context) string {
	r := ghttp.RequestFromCtx(ctx)
	if r == nil {
		return ""
	}
	ip := strings.ReplaceAll(r.GetClientIp(), "\x00", "")
	if len(ip) > maxClientIp {
		ip = ip[:maxClientIp]
	}
	info := ip + "\x00" + strings.ReplaceAll(r.UserAgent(), "\x00", "")
	if len(info) > maxClientInfo {
		info = info[:maxClientInfo]
	}
	return strings.ToValidUTF8(info, "")
}

// splitClient splits client info into the IP and the User-Agent.
func splitClient(client string) (ip, userAgent string) {
	ip, userAgent, _ = strings.Cut(client, "\x00")
	return ip, userAgent
}

// decodeLegacy reads the formats gf's own storages write.
func decodeLegacy(b []byte) (map[string]any, error) {
	if len(b) > 0 && b[0] == '{' {
		if m, err := decodeJSONObject(string(b)); err == nil {
			return m, nil
		}
	}
	if len(b) > 8 {
		body := b[8:]
		if body[0] == '{' {
			return decodeJSONObject(string(body))
		}
		if len(body)%16 == 0 {
			if plain, err := gaes.Decrypt(body, gsession.DefaultStorageFileCryptoKey); err == nil && len(plain) > 0 && plain[0] == '{' {
				return decodeJSONObject(string(plain))
			}
		}
	}
	return nil, errCorrupt("unknown format")
}

func decodeJSONObject(s string) (map[string]any, error) {
	v, err := decodeJSON(s)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errCorrupt("JSON session is not an object")
	}
	return m, nil
}

// encodeValue returns the stored form of one value `v` under `key` of session
// `id` (a Redis hash field). A value that the codec cannot store so that it
// comes back (see CodecBinary) is an error naming `key`
// (CodeInvalidParameter).
func (e *envelope) encodeValue(id, key string, v any) ([]byte, error) {
	buf := []byte{magic0, e.flags()}
	if e.keys == nil {
		b, err := e.codec.encode(buf, v)
		if err != nil {
			return nil, errKey(key, err)
		}
		return b, nil
	}
	plain, err := e.codec.encode(nil, v)
	if err != nil {
		return nil, errKey(key, err)
	}
	return e.keys.seal(buf, plain, valueAAD(buf, id, key)), nil
}

// decodeValue decodes `stored`, what encodeValue wrote. Anything else is a
// legacy field written by gf's StorageRedisHashTable and comes back as the
// string itself, unless cryptoKeys are configured: then only sealed values
// are accepted. Decoded strings may share the memory of `stored`.
func (e *envelope) decodeValue(id, key string, stored string) (any, error) {
	if len(stored) < 2 || stored[0] != magic0 {
		if e.keys != nil {
			return nil, errCorrupt("unsealed value refused: cryptoKeys are configured")
		}
		return stored, nil
	}
	flags := stored[1]
	codec := codecById(flags & flagCodecMask)
	if codec == nil || flags&^(flagCodecMask|flagSealed) != 0 {
		return nil, errCorrupt("unknown value flags")
	}
	payload := stored[2:]
	if flags&flagSealed != 0 {
		if e.keys == nil {
			return nil, errCorrupt("value is sealed but no cryptoKeys are configured")
		}
		plain, err := e.keys.open([]byte(payload), valueAAD([]byte(stored[:2]), id, key))
		if err != nil {
			return nil, err
		}
		payload = string(plain)
	} else if e.keys != nil {
		return nil, errCorrupt("value is not sealed but cryptoKeys are configured")
	}
	return codec.decodeValue(payload)
}

// staleSeal reports whether `stored`, a session decodeSession opened, is
// sealed with a key other than the first of cryptoKeys: an old key kept for
// rotation. The storage then seals it again with the first key, so that a
// session that is only read does not keep the old key needed for ever.
// (Key ids are 32 bits of the key's hash: a new key whose id equals the old
// one's, one chance in 4 billion, only skips the resealing.)
func (e *envelope) staleSeal(stored string) bool {
	return e.keys != nil && len(stored) >= headerSize+keyIdSize && strings.HasPrefix(stored, envelopeMagic) &&
		stored[4]&flagSealed != 0 && e.keys.stale(stored[headerSize:])
}

// staleValueSeal is staleSeal for a value decodeValue opened.
func (e *envelope) staleValueSeal(stored string) bool {
	return e.keys != nil && len(stored) >= 2+keyIdSize && stored[0] == magic0 &&
		stored[1]&flagSealed != 0 && e.keys.stale(stored[2:])
}

func valueAAD(head []byte, id, key string) []byte {
	aad := make([]byte, 0, len(head)+len(id)+1+len(key))
	aad = append(aad, head...)
	aad = append(aad, id...)
	aad = append(aad, 0)
	return append(aad, key...)
}

// lifetimeLeft returns how long a session created at `created` may still
// live under the absolute cap `maxLifetime` (0: no cap, returns `ttl`), capped
// at `ttl`. A result <= 0 means the session is over.
func lifetimeLeft(created time.Time, maxLifetime, ttl time.Duration, now time.Time) time.Duration {
	if maxLifetime <= 0 || created.IsZero() {
		return ttl
	}
	left := created.Add(maxLifetime).Sub(now)
	if left < ttl {
		return left
	}
	return ttl
}

// logDropped logs, through gf's default logger, a stored session that reads
// as "no session" because it is corrupt, sealed with an unknown key or
// otherwise unreadable.
func logDropped(ctx context.Context, backend, id string, err error) {
	g.Log().Warningf(ctx, `gfsession: %s: session %q reads as no session: %v`, backend, shortId(id), err)
}
