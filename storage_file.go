package gfsession

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/os/gfile"
	"github.com/gogf/gf/v2/os/gsession"
)

const (
	// DefaultFileCleanupInterval is how often StorageFile removes expired
	// session files when FileConfig.CleanupInterval is 0.
	DefaultFileCleanupInterval = 10 * time.Minute

	// DefaultFileMaxSize is the largest session file, in bytes, StorageFile
	// writes or reads when FileConfig.MaxFileSize is 0: 1 MiB.
	DefaultFileMaxSize = 1 << 20

	// fileSuffix ends every session file name: "<id>.session", the name gf's
	// own StorageFile uses, so a site switching from it keeps its sessions.
	fileSuffix = ".session"
	// fileShards is how many sub-folders ("00" to "3f") the session files
	// are spread over, by a hash of the id. A write creates a temporary file
	// and renames it over the session file, and both lock the folder they
	// change: with every session in one folder, concurrent writers queue on
	// that one lock (measured on ext4 with 32 writers: about 3,300 writes/s
	// in one folder, 17,900 spread over sub-folders, 20,000 for gf's
	// non-atomic rewrite in place).
	fileShards = 64
	// fileTempPrefix and fileTempSuffix frame the names of the temporary
	// files a write goes through, in the session's own sub-folder (so that
	// the rename stays within one folder). The leading dot keeps them apart
	// from session files (ids never hold a dot) and lets the cleaner find
	// leftovers.
	fileTempPrefix = ".gfsession-"
	fileTempSuffix = ".tmp"
	// fileTempMaxAge is how old a temporary file must be before the cleaner
	// takes it for the leftover of a crashed write and removes it.
	fileTempMaxAge = time.Minute

	fileModeDir = 0o700
	// fileUsersDir is the sub-folder of the user index (FileConfig.UserKey):
	// one folder per user, named by the SHA-256 of the user id, holding an
	// empty file per session id.
	fileUsersDir = ".users"
	// fileScanBatch is how many directory entries are read at a time.
	fileScanBatch = 512
)

// DefaultFilePath is the folder StorageFile uses when FileConfig.Path is
// empty: "gfsessions/<executable name>" in the system's temporary folder,
// so that two applications never share sessions or delete each other's
// (each cleaner removes the files idle for longer than its own TTL). A
// storage from the `server.sessionStorage` config node has another default:
// gf's own, the server's `sessionPath` joined with the server's name.
var DefaultFilePath = gfile.Temp("gfsessions", gfile.SelfName())

// FileConfig configures StorageFile. The zero value is ready to use.
type FileConfig struct {
	// Path is the folder holding the session files. It is created, mode 0700,
	// when missing; an existing folder keeps its mode. On unix the folder
	// must belong to the process's user and not be writable by others, and
	// every folder above it, up to the root, must belong to root or the
	// process's user and not be writable by its group or others unless it
	// has the sticky bit, as /tmp has (NewStorageFile fails otherwise):
	// whoever can change a parent folder can put a folder of their own in
	// the session folder's place. Empty means DefaultFilePath.
	//
	// The folder is resolved once, when the storage is created: if Path is or
	// goes through a symbolic link, the storage keeps using the folder the
	// link named then, whatever the link names later. A session file that is
	// not a regular file (a symbolic link, a named pipe, a device) reads as
	// no session, logged; it is never followed or read.
	Path string `json:"path"`
	// MaxLifetime is the absolute lifetime of a session since its creation,
	// however active it is. 0 means none: only the idle TTL applies.
	MaxLifetime time.Duration `json:"maxLifetime"`
	// CryptoKeys, when set, seal every session file with AES-256-GCM: the
	// first key seals, all keys open (see ParseCryptoKeys; in a config file a
	// list of base64 strings). Each key is CryptoKeySize bytes.
	CryptoKeys [][]byte `json:"cryptoKeys"`
	// Codec is CodecBinary (the default) or CodecJSON.
	Codec string `json:"codec"`
	// Fsync makes every write flush the session file and then its folder to
	// stable storage before it returns, so a written session survives a power
	// cut. It costs a disk round trip per write; the default is false.
	Fsync bool `json:"fsync"`
	// CleanupInterval is how often expired session files are removed (they
	// are never served after expiry either way). 0 means
	// DefaultFileCleanupInterval; a negative value (config map: "off", in any
	// case, or a negative duration such as "-1s") disables the cleaner.
	CleanupInterval time.Duration `json:"cleanupInterval" config:"negative"`
	// UserKey is the session key holding the user id, for DestroyUser ("log
	// out everywhere"). With it set, every write records the session under
	// its user in an index folder (".users" in Path). Empty: no index, and
	// DestroyUser fails.
	UserKey string `json:"userKey"`
	// MaxSessionsPerUser bounds the live sessions of one user (by UserKey,
	// which it needs): when a write makes a session belong to a user who
	// then has more, the least recently active ones are destroyed. 1 is
	// "one login per account". 0 means no bound; a negative value, or one
	// without UserKey, is an error.
	MaxSessionsPerUser int `json:"maxSessionsPerUser"`
	// ClientInfo keeps with each session the client IP and User-Agent of
	// the request that created or last wrote it (from the ghttp request in
	// the context), for Admin.Sessions. Off by default: it is personal
	// data. Sealed with the session when CryptoKeys are set.
	ClientInfo bool `json:"clientInfo"`
	// MaxFileSize is the largest session file in bytes. A session that
	// encodes to more fails to be written (Session.Close returns the error,
	// and the stored session stays as it was); a larger file found in the
	// folder reads as no session (logged) and is never read. 0 means
	// DefaultFileMaxSize.
	MaxFileSize int64 `json:"maxFileSize"`
}

// StorageFile keeps each session in a file "<id>.session" under one folder
// (in one of 64 sub-folders, "00" to "3f", chosen by a hash of the id, so
// that concurrent writes do not all queue on one folder's lock): for a
// single server, or several sharing a folder, without a database. It is
// gf's StorageFile done right:
//
//   - files are 0600 and the folder 0700; with CryptoKeys the content is
//     sealed with AES-256-GCM and tied to its session id;
//   - session ids are validated (IsValidSessionId) before any path is built,
//     so a client-chosen id such as "../x" never touches a file;
//   - writes are atomic (a temporary file renamed over the session file), so
//     a concurrent reader sees the old or the new session, never an empty or
//     partial one (gf's StorageFile truncates the file first);
//   - the idle TTL is the file's modification time: a read-only request
//     refreshes it with a metadata update, never by rewriting the content;
//   - the cleaner reads directory metadata only, never file contents, and
//     stops on Close;
//   - it implements Admin: Count and Range read the folder's metadata in
//     batches, and with a UserKey an index folder lets DestroyUser read only
//     the user's sessions.
//
// Writes are last-writer-wins per session: two requests of one session that
// close at the same time each write the whole session, and the later one's
// data is what remains. Sessions that need per-key merging belong in
// StorageMemory or StorageRedisHash.
//
// gf's legacy session files ("<id>.session" directly in the folder, 8-byte
// timestamp + JSON, plain or encrypted with gf's default key) are read too;
// they are rewritten in the current format and layout on their next change.
type StorageFile struct {
	gsession.StorageBase
	config FileConfig
	// dir is the session folder: absolute, with symbolic links resolved when
	// the storage was created.
	dir      string
	maxSize  int64
	envelope *envelope
	tracker  loadTracker
	w        sessionWriter
	// maxTTL is the largest TTL (nanoseconds) the storage has been called
	// with: the cleaner removes files idle for longer, and nothing before the
	// first call.
	maxTTL  atomic.Int64
	cleaner background
}

var _ Admin = (*StorageFile)(nil)

// normalize checks `c` and applies its defaults: DefaultFilePath for an
// empty Path, DefaultFileMaxSize for a MaxFileSize of 0 and
// DefaultFileCleanupInterval for a CleanupInterval of 0. A negative
// MaxLifetime or MaxFileSize, an unknown Codec and a bad crypto key are
// errors naming the option, "gfsession: file storage: <key>: ...". It does
// not touch the folder (see NewStorageFile).
func (c *FileConfig) normalize() error {
	if c.Path == "" {
		c.Path = DefaultFilePath
	}
	if err := notNegative(TypeFile, "maxLifetime", c.MaxLifetime); err != nil {
		return err
	}
	if err := notNegative(TypeFile, "maxFileSize", c.MaxFileSize); err != nil {
		return err
	}
	if err := limitNeedsUserKey(TypeFile, c.MaxSessionsPerUser, c.UserKey); err != nil {
		return err
	}
	c.MaxFileSize = orDefault(c.MaxFileSize, DefaultFileMaxSize)
	c.CleanupInterval = orDefault(c.CleanupInterval, DefaultFileCleanupInterval)
	_, err := newStorageEnvelope(TypeFile, c.Codec, c.CryptoKeys)
	return err
}

// NewStorageFile creates a file storage in `config`.Path, creating the folder
// when missing, and resolves the folder's symbolic links once: the storage
// uses the folder found now for as long as it lives. It returns an error for
// a bad codec, crypto key, MaxLifetime or MaxFileSize, a folder that cannot
// be created, and on unix a folder (or one of its sub-folders) that is not a
// folder of the process's user that only it can write, or a folder inside
// one that another user can change (see FileConfig.Path); errors name the
// option, "gfsession: file storage: path: ...". Unless CleanupInterval is
// negative, it starts one goroutine that removes expired files until Close.
func NewStorageFile(config FileConfig) (*StorageFile, error) {
	if err := config.normalize(); err != nil {
		return nil, err
	}
	env, err := newStorageEnvelope(TypeFile, config.Codec, config.CryptoKeys)
	if err != nil {
		return nil, err
	}
	dir, err := openSessionFolder(config.Path)
	if err != nil {
		return nil, storageError(TypeFile, err)
	}
	s := &StorageFile{config: config, dir: dir, maxSize: config.MaxFileSize, envelope: env}
	s.w = sessionWriter{backend: TypeFile, tracker: &s.tracker, env: env, driver: fileDriver{s}, userKey: config.UserKey,
		maxLifetime: config.MaxLifetime, maxBlob: config.MaxFileSize, maxBlobKey: "maxFileSize", clientInfo: config.ClientInfo}
	if config.MaxSessionsPerUser > 0 {
		s.w.limit = &sessionLimit{backend: TypeFile, max: config.MaxSessionsPerUser, list: s.userSessions,
			destroy: func(ctx context.Context, _, handle string) error { return s.DestroyHandle(ctx, handle) }}
	}
	s.cleaner.start(config.CleanupInterval, func(ctx context.Context) {
		if err := s.sweep(ctx, time.Now()); err != nil && ctx.Err() == nil {
			g.Log().Warningf(context.Background(), `gfsession: file: cleaning %q: %v`, s.dir, err)
		}
	})
	return s, nil
}

// openSessionFolder creates the session folder `path` and its sub-folders
// when missing, and returns it absolute, with its symbolic links resolved,
// after checking it and its parents (see FileConfig.Path). Errors start
// with "path: ".
func openSessionFolder(path string) (string, error) {
	dir, err := filepath.Abs(path)
	if err != nil {
		return "", gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `path: %q`, path)
	}
	if err = os.MkdirAll(dir, fileModeDir); err != nil {
		return "", gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `path: cannot create session folder %q`, dir)
	}
	// From here on only the resolved folder is used: repointing a link on
	// the way, later, changes nothing (the checks below hold for the folder
	// the storage uses, not for whatever a link names at the time).
	if dir, err = filepath.EvalSymlinks(dir); err != nil {
		return "", gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `path: %q`, path)
	}
	if err = checkSessionFolder(dir); err != nil {
		return "", err
	}
	// Resolving once protects nothing if another user can swap the folder
	// itself, by a rename in a parent folder.
	if err = checkFolderParents(dir); err != nil {
		return "", err
	}
	for _, shard := range fileShardNames {
		sub := filepath.Join(dir, shard)
		if err = os.Mkdir(sub, fileModeDir); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `path: cannot create session folder %q`, sub)
		}
		if err = checkSessionFolder(sub); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// checkSessionFolder checks that `dir` is a folder, not a symbolic link or
// anything else, and (on unix) that it belongs to the process's user and no
// other user can write it.
func checkSessionFolder(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `path: %q`, dir)
	}
	if !fi.IsDir() {
		return gerror.NewCodef(gcode.CodeInvalidConfiguration, `path: %q is not a folder (%s)`, dir, fileKind(fi.Mode()))
	}
	return checkFolderOwner(dir, fi)
}

func init() {
	Register(TypeFile, configFactory(newStorageFileFromConfig))
}

// newStorageFileFromConfig builds the file storage of a `sessionStorage`
// node, decoded into `config`. Built for a server by the config hook, a
// storage without a `path` keeps its files where gf keeps the server's:
// `sessionPath` (gf's default: "gsessions" in the temporary folder) joined
// with the server's name, one folder per application.
func newStorageFileFromConfig(ctx context.Context, config FileConfig, _ map[string]any) (gsession.Storage, error) {
	if server, ok := serverOf(ctx); ok && config.Path == "" {
		sessionPath := server.sessionPath
		if sessionPath == "" {
			sessionPath = gsession.DefaultStorageFilePath
		}
		config.Path = gfile.Join(sessionPath, server.name)
		if server.unnamed {
			startupLogger().Warningf(ctx,
				`gfsession: file storage in %q: every application whose server keeps gf's default name %q shares this folder, and each one's cleaner removes the others' idle sessions; name the server (server.name) or give the storage a path`,
				config.Path, server.name)
		}
	}
	return NewStorageFile(config)
}

// Path returns the absolute path of the folder holding the session files,
// with the symbolic links of FileConfig.Path resolved as they were when the
// storage was created.
func (s *StorageFile) Path() string {
	return s.dir
}

// fileShardNames are the names of the sub-folders, by shard number.
var fileShardNames = func() (names [fileShards]string) {
	for i := range names {
		names[i] = fmt.Sprintf("%02x", i)
	}
	return names
}()

// fileShard returns the sub-folder of session `id`: FNV-1a of the id, a
// hash that does not change between processes or versions, since it names
// where the session is stored.
func fileShard(id string) string {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return fileShardNames[h%fileShards]
}

// sessionPath returns the file of session `id`, which must be valid:
// "<Path>/<shard>/<id>.session".
func (s *StorageFile) sessionPath(id string) string {
	return filepath.Join(s.dir, fileShard(id), id+fileSuffix)
}

// sessionFolders returns the folders holding session files: first the
// folder itself, which holds gf's layout, then the sub-folders. A
// sub-folder that does not exist (yet, or any more) holds no session.
func (s *StorageFile) sessionFolders() []string {
	dirs := make([]string, 0, 1+fileShards)
	dirs = append(dirs, s.dir)
	for _, shard := range fileShardNames {
		dirs = append(dirs, filepath.Join(s.dir, shard))
	}
	return dirs
}

// legacyPath returns where gf's own StorageFile keeps session `id`:
// "<Path>/<id>.session", read as a fallback so that a site switching from gf
// keeps its sessions. A session read from there moves to sessionPath on its
// next write.
func (s *StorageFile) legacyPath(id string) string {
	return filepath.Join(s.dir, id+fileSuffix)
}

// noteTTL remembers `ttl` if it is the largest seen so far.
func (s *StorageFile) noteTTL(ttl time.Duration) {
	for {
		cur := s.maxTTL.Load()
		if int64(ttl) <= cur || s.maxTTL.CompareAndSwap(cur, int64(ttl)) {
			return
		}
	}
}

// New returns a new random session id (see NewSessionId).
func (s *StorageFile) New(ctx context.Context, ttl time.Duration) (string, error) {
	return NewSessionId(), nil
}

// GetSession returns the session's data, or nil when the session file does
// not exist, has not been written or refreshed for longer than `ttl`, has
// outlived MaxLifetime, holds corrupt data or data sealed with an unknown key
// (logged), is not a regular file or is larger than MaxFileSize (logged, and
// never followed or read), or `sessionId` is not a valid id. An expired file
// is removed.
// A session it returns has its idle TTL restarted at `ttl`: the file's
// modification time is set to now, unless it was set less than
// min(`ttl`/64, 1s) ago (so a busy session costs no metadata write per
// request, and may expire that much early). Errors are only those of the
// file system, naming the file with its handle shortened.
//
// The file is named by the session's handle (see Handle). When there is
// none, a file gf's StorageFile left under the id itself ("<Path>/<id>.session")
// is moved to the handle's name (see moveLegacy) and read from there.
func (s *StorageFile) GetSession(ctx context.Context, sessionId string, ttl time.Duration) (*gmap.StrAnyMap, error) {
	if !IsValidSessionId(sessionId) {
		return nil, nil
	}
	s.noteTTL(ttl)
	return loadByHandle(sessionId,
		func(h string) (*gmap.StrAnyMap, bool, error) { return s.getSession(ctx, h, ttl) },
		func(h string) (bool, error) { return s.moveLegacy(ctx, sessionId, h) })
}

// moveLegacy moves the file gf's StorageFile keeps session `id` in to the
// name of its handle `handle`, and reports whether there is a file under
// the handle's name now. The move is a hard link and a removal of the old
// name: a logout (RemoveAll) removes the old name before the new one, so it
// finds the file under one name or the other, never under neither.
func (s *StorageFile) moveLegacy(ctx context.Context, id, handle string) (bool, error) {
	if !mayBeStoredRaw(id) {
		return false, nil
	}
	from, to := s.legacyPath(id), s.sessionPath(handle)
	fi, err := os.Lstat(from)
	if err != nil {
		return false, nil
	}
	if err := refusedFile(fi, 0); err != nil {
		// A symbolic link, a pipe, ...: neither read nor moved.
		logDropped(ctx, TypeFile, handle, fileErr(err, "open session file", from))
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		return false, fileErr(err, "create session folder", filepath.Dir(to))
	}
	err = os.Link(from, to)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil // another request moved it, or a logout removed it
		}
		return false, fileErr(err, "move session file", from)
	}
	if err := os.Remove(from); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return true, fileErr(err, "remove session file", from)
	}
	return true, nil
}

// getSession is GetSession of the session stored as `sessionId` (its
// handle); `found` reports whether there was a file.
func (s *StorageFile) getSession(ctx context.Context, sessionId string, ttl time.Duration) (m *gmap.StrAnyMap, found bool, err error) {
	f, fi, path, err := s.openSession(ctx, sessionId)
	if f == nil || err != nil {
		return nil, err != nil, err
	}
	defer f.Close()
	now := time.Now()
	if fi.ModTime().Add(ttl).Before(now) {
		s.removeIfSame(path, fi)
		return nil, true, nil
	}
	// One read of the size fstat gave (at most MaxFileSize): a session file
	// is never changed in place (writes rename a new file over it), so that
	// is all of it. A shorter file (one of gf's, rewritten meanwhile) reads
	// as corrupt.
	b := make([]byte, fi.Size())
	if _, err = io.ReadFull(f, b); err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return nil, true, fileErr(err, "read session file", path)
	}
	data, created, err := s.envelope.decodeSession(sessionId, string(b))
	if err != nil {
		logDropped(ctx, TypeFile, sessionId, err)
		return nil, true, nil
	}
	if lifetimeLeft(created, s.config.MaxLifetime, ttl, now) <= 0 {
		s.removeIfSame(path, fi)
		return nil, true, nil
	}
	if len(data) == 0 {
		return nil, true, nil
	}
	// Restart the idle TTL here rather than in UpdateTTL: the file was just
	// stat'ed, so a read-only request costs no second stat. The times are
	// set on the open file, not through the path, which may name something
	// else by now.
	if now.Sub(fi.ModTime()) >= min(ttl/64, time.Second) {
		if err = touchFile(f, path, now); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, true, fileErr(err, "touch session file", path)
		}
	}
	if s.envelope.staleSeal(string(b)) {
		s.reseal(ctx, sessionId, path, b, created, data)
	}
	return s.w.loaded(sessionId, created, data), true, nil
}

// openSession opens the file of the session stored as `name` and stats it.
// Stat and read go to the same open file: a concurrent write renames a new
// file over the path, and this one stays whole and consistent. A missing
// file, and a file refused (logged), return a nil file and no error.
func (s *StorageFile) openSession(ctx context.Context, name string) (f *os.File, fi fs.FileInfo, path string, err error) {
	path = s.sessionPath(name)
	f, fi, err = s.openSessionFile(path)
	var refused *refusedFileError
	switch {
	case err == nil:
		return f, fi, path, nil
	case errors.As(err, &refused):
		logDropped(ctx, TypeFile, name, err)
		fallthrough
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil, "", nil
	}
	return nil, nil, "", err
}

// refusedFileError is why a file at a session file's name is not read: it
// is not a regular file, or it is larger than MaxFileSize. Such a file
// reads as no session.
type refusedFileError struct {
	reason string
}

func (e *refusedFileError) Error() string {
	return e.reason
}

// refusedFile returns the *refusedFileError for a file described by `fi`
// that is not a regular file or is larger than `maxSize` (0: no limit), or
// nil for a regular file within the limit.
func refusedFile(fi fs.FileInfo, maxSize int64) error {
	if !fi.Mode().IsRegular() {
		return &refusedFileError{reason: fmt.Sprintf("a %s, not a regular file: not read", fileKind(fi.Mode()))}
	}
	if maxSize > 0 && fi.Size() > maxSize {
		return &refusedFileError{reason: fmt.Sprintf("%d bytes, more than maxFileSize (%d bytes): not read", fi.Size(), maxSize)}
	}
	return nil
}

// fileKind names the kind of file `mode` describes, for messages.
func fileKind(mode fs.FileMode) string {
	switch {
	case mode&fs.ModeSymlink != 0:
		return "symbolic link"
	case mode&fs.ModeNamedPipe != 0:
		return "named pipe"
	case mode&fs.ModeSocket != 0:
		return "socket"
	case mode&fs.ModeDevice != 0:
		return "device"
	case mode.IsDir():
		return "folder"
	case mode.IsRegular():
		return "regular file"
	}
	return "file of mode " + mode.String()
}

// openSessionFile opens the session file at `path` for reading and returns
// it with its metadata. It never follows a symbolic link and never blocks
// on a special file: a file at `path` that is not a regular file, or is
// larger than MaxFileSize, is closed unread and refused with a
// *refusedFileError. A missing file is an error that is fs.ErrNotExist;
// other errors are the file system's, naming the file with its id
// shortened.
func (s *StorageFile) openSessionFile(path string) (*os.File, fs.FileInfo, error) {
	f, err := openNoFollow(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, nil, fileErr(err, "open session file", path)
	}
	fi, err := f.Stat()
	if err == nil {
		err = refusedFile(fi, s.maxSize)
	}
	if err != nil {
		_ = f.Close()
		return nil, nil, fileErr(err, "open session file", path)
	}
	return f, fi, nil
}

// readSessionFile returns the content of the session file at `path`, with
// the errors of openSessionFile.
func (s *StorageFile) readSessionFile(path string) ([]byte, error) {
	b, _, err := s.readSessionFileInfo(path)
	return b, err
}

// readSessionFileInfo is readSessionFile, also returning the file's info
// (as the open file had it when read).
func (s *StorageFile) readSessionFileInfo(path string) ([]byte, fs.FileInfo, error) {
	f, fi, err := s.openSessionFile(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	b := make([]byte, fi.Size())
	n, err := io.ReadFull(f, b)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return nil, nil, fileErr(err, "read session file", path)
	}
	return b[:n], fi, nil
}

// fileErr wraps `err`, the error of operation `op` on the file at `path`,
// with a message naming the file as showPath does. The *fs.PathError or
// *os.LinkError of the os package is unwrapped first: its message holds the
// whole path, and the path of a session file holds the session id.
// errors.Is and errors.As still see the cause (fs.ErrNotExist, a
// *refusedFileError).
func fileErr(err error, op, path string) error {
	code := gcode.CodeInternalError
	var refused *refusedFileError
	switch e := err.(type) {
	case *fs.PathError:
		err = e.Err
	case *os.LinkError:
		err = e.Err
	default:
		if errors.As(err, &refused) {
			code = gcode.CodeSecurityReason
		}
	}
	return gerror.WrapCodef(code, err, `gfsession: file storage: %s %q`, op, showPath(path))
}

// showPath returns `path` as messages show it: a session id in its last
// element (a session file "<id>.session", a user index entry "<id>") is
// shortened by shortId, since the id is a bearer token.
func showPath(path string) string {
	dir, name := filepath.Split(path)
	id := strings.TrimSuffix(name, fileSuffix)
	if !IsValidSessionId(id) {
		return path
	}
	return dir + shortId(id) + name[len(id):]
}

// removeIfSame removes the file at `path` if it still is the file `fi`
// describes, and not a newer session written over it meanwhile. It is best
// effort: errors are ignored, as the file reads as expired anyway.
func (s *StorageFile) removeIfSame(path string, fi os.FileInfo) {
	if cur, err := os.Lstat(path); err == nil && os.SameFile(cur, fi) && cur.ModTime().Equal(fi.ModTime()) {
		_ = os.Remove(path)
	}
}

// SetSession writes `sessionData` as the whole session: encoded, written to
// a temporary file in the folder, flushed when Fsync is set and renamed over
// the session file, so readers never see a partial file. The TTL restarts at
// `ttl`. A session with no keys is deleted. Concurrent writers of one
// session: the last one wins. An invalid `sessionId`, a nil `sessionData`
// and a session that encodes to more than MaxFileSize are errors
// (CodeInvalidParameter), and leave the stored session as it was.
//
// It follows the package's write rules (see Writes in the package
// documentation), with one exception: a session GetSession loaded is
// written only while its file still holds that session, but the file's
// header is checked just before the rename, and the check and the rename
// are two steps: a deletion that lands between them, microseconds apart,
// is overwritten and the session comes back.
func (s *StorageFile) SetSession(ctx context.Context, sessionId string, sessionData *gmap.StrAnyMap, ttl time.Duration) error {
	if err := checkWrite(TypeFile, sessionId, sessionData); err != nil {
		return err
	}
	s.noteTTL(ttl)
	return s.w.setSession(ctx, Handle(sessionId), sessionData, ttl)
}

// fileDriver is the file storage's sessionDriver.
type fileDriver struct{ s *StorageFile }

// put writes session `w.id`'s file (see writeFile), checking just before the
// rename that the file loaded is still there for a conditional write. The
// user's marker is confirmed after the write.
func (d fileDriver) put(ctx context.Context, w *sessionWrite) (bool, error) {
	s := d.s
	path := s.sessionPath(w.id)
	var check func() error
	switch {
	case w.match == matchNone:
	case w.match == matchExists:
		check = func() error { return fileStillExists(path) }
	default:
		check = func() error { return s.fileStillCreated(path, w.loaded.created) }
	}
	if err := s.writeFile(path, w.blob, check); err != nil {
		if errors.Is(err, errSessionGone) {
			return false, nil
		}
		return false, err
	}
	if w.user != "" {
		return true, s.indexUser(w.user, w.id)
	}
	return true, nil
}

// remove deletes session `id`'s file.
func (d fileDriver) remove(ctx context.Context, id string) error {
	return removeFile(d.s.sessionPath(id))
}

// removeFile removes the session file at `path`; a missing file is not an
// error.
func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fileErr(err, "remove session file", path)
	}
	return nil
}

// holds reports whether the file of session `l.id` is still the one loaded.
func (d fileDriver) holds(ctx context.Context, l *loaded) (bool, error) {
	var err error
	switch {
	case l.created.IsZero():
		err = fileStillExists(d.s.sessionPath(l.id))
	default:
		err = d.s.fileStillCreated(d.s.sessionPath(l.id), l.created)
	}
	if errors.Is(err, errSessionGone) {
		return false, nil
	}
	return err == nil, err
}

// indexUser creates the marker of session `id` in the folder of `user`.
func (d fileDriver) indexUser(ctx context.Context, user, id string) error {
	return d.s.indexUser(user, id)
}

// fileStillExists is a writeFile check: the file at `path` exists.
func fileStillExists(path string) error {
	if _, err := os.Lstat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errSessionGone
		}
		return fileErr(err, "stat session file", path)
	}
	return nil
}

// fileStillCreated is a writeFile check: the file at `path` holds a session
// created at `created`, the one a request loaded, not a new session another
// request started under the id (nor anything else, such as a symbolic link).
func (s *StorageFile) fileStillCreated(path string, created time.Time) error {
	f, _, err := s.openSessionFile(path)
	if err != nil {
		var refused *refusedFileError
		if errors.Is(err, fs.ErrNotExist) || errors.As(err, &refused) {
			return errSessionGone
		}
		return err
	}
	defer f.Close()
	var head [headerSize]byte
	if _, err = io.ReadFull(f, head[:]); err != nil || string(head[:len(envelopeMagic)]) != envelopeMagic ||
		int64(binary.BigEndian.Uint64(head[5:])) != created.UnixMilli() {
		return errSessionGone
	}
	return nil
}

// errSessionGone is a writeFile check's error for a session that is gone or
// changed, so that the write must not happen.
var errSessionGone = errors.New("session deleted or changed")

// reseal rewrites session `id`, read from `path` as `stored` and sealed with
// an old key, sealed with the first key, once: a session that is only read
// would keep the old key needed for as long as it lives. The file is
// replaced only if it still holds what was read, and a failure only logs:
// the read succeeded.
func (s *StorageFile) reseal(ctx context.Context, id, path string, stored []byte, created time.Time, data map[string]any) {
	_, _, meta, _ := s.envelope.decodeSessionMeta(id, string(stored))
	b, err := s.envelope.encodeSessionMeta(id, created, data, meta)
	if err == nil {
		err = s.writeFile(path, b, func() error {
			if cur, err := s.readSessionFile(path); err != nil || !bytes.Equal(cur, stored) {
				return errSessionGone
			}
			return nil
		})
	}
	if err != nil && !errors.Is(err, errSessionGone) {
		g.Log().Warningf(ctx, `gfsession: file: sealing session %q with the new crypto key: %v`, shortId(id), err)
	}
}

// writeFile replaces the file at `path` with `b` atomically. A non-nil
// `check` runs just before the rename, and its error cancels the write:
// SetSession checks that a session it loaded still exists, reseal that the
// file still holds what it read. The check and the rename are two steps: a
// change between them, microseconds apart, is not seen.
func (s *StorageFile) writeFile(path string, b []byte, check func() error) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, fileTempPrefix+"*"+fileTempSuffix) // mode 0600
	if errors.Is(err, fs.ErrNotExist) {
		// The folder was removed under the storage: make it again.
		if err = os.MkdirAll(dir, fileModeDir); err == nil {
			tmp, err = os.CreateTemp(dir, fileTempPrefix+"*"+fileTempSuffix)
		}
	}
	if err != nil {
		return fileErr(err, "create temporary file for", path)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	preallocate(tmp, int64(len(b)))
	if _, err = tmp.Write(b); err != nil {
		return fileErr(err, "write", tmp.Name())
	}
	if s.config.Fsync {
		if err = tmp.Sync(); err != nil {
			return fileErr(err, "fsync", tmp.Name())
		}
	}
	if err = tmp.Close(); err != nil {
		return fileErr(err, "close", tmp.Name())
	}
	if check != nil {
		if err = check(); err != nil {
			return err
		}
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fileErr(err, "rename temporary file to", path)
	}
	if s.config.Fsync {
		if err := syncDir(dir); err != nil {
			// The session is in place; only its durability is in doubt.
			return fileErr(err, "fsync folder", dir)
		}
	}
	return nil
}

// syncDir flushes the directory entries of `dir` (a rename) to disk.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// UpdateTTL does nothing and returns nil: GetSession already restarted the
// TTL when it loaded the session (gf calls UpdateTTL only for a session it
// loaded and did not change), which saves a stat per request.
func (s *StorageFile) UpdateTTL(ctx context.Context, sessionId string, ttl time.Duration) error {
	return nil
}

// RemoveAll deletes the session file (and a file of gf's layout for the same
// id). A missing session is not an error.
func (s *StorageFile) RemoveAll(ctx context.Context, sessionId string) error {
	if !IsValidSessionId(sessionId) {
		return nil
	}
	if mayBeStoredRaw(sessionId) {
		// gf's file first, then the handle's: see moveLegacy.
		if err := removeFile(s.legacyPath(sessionId)); err != nil {
			return err
		}
	}
	return s.w.removeAll(ctx, Handle(sessionId))
}

// DestroyHandle deletes the session whose handle is `handle` (see Handle),
// as Destroy deletes a session by id. A missing session is not an error.
func (s *StorageFile) DestroyHandle(ctx context.Context, handle string) error {
	if !IsHandle(handle) {
		return nil
	}
	ctx = adminContext(ctx)
	return s.w.removeAll(ctx, handle)
}

// sweep removes the session files not modified for longer than the largest
// TTL the storage has been called with (none before the first call),
// temporary files left by interrupted writes, and user index entries of
// sessions that are gone. It reads directory metadata only, never file
// contents. It stops early when `ctx` is cancelled (Close).
func (s *StorageFile) sweep(ctx context.Context, now time.Time) error {
	maxTTL := time.Duration(s.maxTTL.Load())
	sweepDir := func(dir string) error {
		return scanDir(dir, func(e fs.DirEntry) bool {
			if ctx.Err() != nil {
				return false // Close: stop at once, not after the whole folder
			}
			if !e.Type().IsRegular() {
				return true
			}
			name := e.Name()
			var maxAge time.Duration
			switch {
			case s.isSessionFile(name):
				if maxTTL <= 0 {
					return true
				}
				maxAge = maxTTL
			case strings.HasPrefix(name, fileTempPrefix) && strings.HasSuffix(name, fileTempSuffix):
				maxAge = fileTempMaxAge
			default:
				return true
			}
			if fi, err := e.Info(); err == nil && fi.ModTime().Add(maxAge).Before(now) {
				s.removeIfSame(filepath.Join(dir, name), fi)
			}
			return true
		})
	}
	for i, dir := range s.sessionFolders() {
		if err := sweepDir(dir); err != nil && !(i > 0 && errors.Is(err, fs.ErrNotExist)) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return s.sweepUsers(ctx)
}

// sweepUsers removes the user index entries of sessions whose file is gone,
// and user folders left empty.
func (s *StorageFile) sweepUsers(ctx context.Context) error {
	usersDir := filepath.Join(s.dir, fileUsersDir)
	err := scanDir(usersDir, func(u fs.DirEntry) bool {
		if ctx.Err() != nil {
			return false
		}
		if !u.IsDir() {
			return true
		}
		userDir := filepath.Join(usersDir, u.Name())
		_ = scanDir(userDir, func(e fs.DirEntry) bool {
			if id := e.Name(); IsValidSessionId(id) && !s.exists(id) {
				// Removed, then checked again: a login that created the
				// session in between confirms its entry after its write,
				// or is seen here and listed again.
				_ = os.Remove(filepath.Join(userDir, id))
				if s.exists(id) {
					_ = writeMarker(filepath.Join(userDir, id))
				}
			}
			return true
		})
		_ = os.Remove(userDir) // only if empty
		return true
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// exists reports whether the file of the session stored as `name` exists
// (an error other than "not found" counts as existing).
func (s *StorageFile) exists(name string) bool {
	_, err := os.Lstat(s.sessionPath(name))
	return !errors.Is(err, fs.ErrNotExist)
}

// isSessionFile reports whether `name` is the name of a session file.
func (s *StorageFile) isSessionFile(name string) bool {
	return strings.HasSuffix(name, fileSuffix) && IsValidSessionId(strings.TrimSuffix(name, fileSuffix))
}

// scanDir calls `fn` for the entries of `dir`, read fileScanBatch at a time,
// until `fn` returns false. A symbolic link at `dir` is not followed, and a
// named pipe there does not block (reading it fails).
func scanDir(dir string, fn func(e fs.DirEntry) bool) error {
	d, err := openNoFollow(dir, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	for {
		entries, err := d.ReadDir(fileScanBatch)
		for _, e := range entries {
			if !fn(e) {
				return nil
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// rangeLive calls `fn` with the id of every session file not idle for
// longer than the largest TTL seen (every file before any call) until `fn`
// returns false.
//
// With `move`, a file of gf's (named by the session id, in the folder
// itself) is moved to its handle's name (see moveLegacy) before `fn` sees
// the handle, so that DestroyHandle finds it; the sub-folders are read
// first, so that a file moved into one is not visited twice.
func (s *StorageFile) rangeLive(ctx context.Context, move bool, fn func(id string) bool) error {
	var (
		maxTTL  = time.Duration(s.maxTTL.Load())
		now     = time.Now()
		ctxErr  error
		moveErr error
		more    = true
	)
	visit := func(dir string, legacy bool) error {
		return scanDir(dir, func(e fs.DirEntry) bool {
			if ctxErr = ctx.Err(); ctxErr != nil {
				return false
			}
			name := e.Name()
			if !e.Type().IsRegular() || !s.isSessionFile(name) {
				return true
			}
			if maxTTL > 0 {
				fi, err := e.Info()
				if err != nil || fi.ModTime().Add(maxTTL).Before(now) {
					return true
				}
			}
			id := strings.TrimSuffix(name, fileSuffix)
			if legacy {
				var visit bool
				if id, visit, moveErr = s.legacyEntry(ctx, id, move); !visit {
					return moveErr == nil
				}
			}
			more = fn(id)
			return more
		})
	}
	folders := s.sessionFolders()
	if move {
		folders = append(folders[1:], folders[0])
	}
	for _, dir := range folders {
		legacy := dir == s.dir
		err := visit(dir, legacy)
		if moveErr != nil {
			return moveErr
		}
		if err != nil && !(!legacy && errors.Is(err, fs.ErrNotExist)) {
			return gerror.Wrapf(err, `gfsession: file storage: read folder %q`, dir)
		}
		if ctxErr != nil || !more {
			break
		}
	}
	return ctxErr
}

// legacyEntry returns the handle of the file of gf's named by session id
// `raw` that rangeLive found in the folder itself, and whether rangeLive
// visits it. Without `move`, a file already moved to its handle's name is
// not visited: its sub-folder counts it. With `move`, the file is moved
// (see moveLegacy) and visited, and one whose handle's file exists is
// visited too: moved since the sub-folders were read (a load of it ran
// meanwhile), or left beside its moved copy, it is given again rather than
// missed.
func (s *StorageFile) legacyEntry(ctx context.Context, raw string, move bool) (handle string, visit bool, err error) {
	handle = Handle(raw)
	if _, err := os.Lstat(s.sessionPath(handle)); err == nil {
		return handle, move, nil
	}
	if !move {
		return handle, true, nil
	}
	moved, err := s.moveLegacy(ctx, raw, handle)
	return handle, moved && err == nil, err
}

// Count returns the number of session files not idle for longer than the
// largest TTL the storage has been called with (before any call: every
// session file). It reads the folder's metadata: its cost grows with the
// number of files.
func (s *StorageFile) Count(ctx context.Context) (int, error) {
	n := 0
	err := s.rangeLive(ctx, false, func(string) bool { n++; return true })
	return n, err
}

// Range calls `fn` with the handle (see Handle) of every session Count
// counts, until `fn` returns false. It reads the folder fileScanBatch
// entries at a time, so it never holds every handle in memory; `fn` may use
// the storage.
func (s *StorageFile) Range(ctx context.Context, fn func(handle string) bool) error {
	return s.rangeLive(ctx, true, fn)
}

// Destroy deletes session `sessionId`; see RemoveAll.
func (s *StorageFile) Destroy(ctx context.Context, sessionId string) error {
	return s.RemoveAll(adminContext(ctx), sessionId)
}

// DestroyUser deletes every session whose FileConfig.UserKey value equals
// `userId` and returns how many it deleted. It reads only the sessions the
// user index lists for `userId`, and deletes each only if it still holds
// that user; index entries found stale are removed. Each entry is removed
// before its session is read: a login racing DestroyUser either is read and
// deleted, or writes the entry again after its write. Without a UserKey it
// fails with CodeInvalidOperation.
func (s *StorageFile) DestroyUser(ctx context.Context, userId string) (int, error) {
	return s.DestroyUserExcept(ctx, userId, "")
}

// DestroyUserExcept is DestroyUser sparing the session whose handle is
// `keep`, whose marker stays too.
func (s *StorageFile) DestroyUserExcept(ctx context.Context, userId, keep string) (int, error) {
	ids, userDir, err := s.userMarkers(userId)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if keep != "" && id == keep {
			continue
		}
		marker := filepath.Join(userDir, id)
		_ = os.Remove(marker)
		path := s.sessionPath(id)
		b, err := s.readSessionFile(path)
		var refused *refusedFileError
		if err == nil {
			data, _, derr := s.envelope.decodeSession(id, string(b))
			if derr == nil && userOf(data, s.config.UserKey) == userId {
				if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
					_ = s.indexUser(userId, id) // still stored: still listed
					return n, fileErr(err, "remove session file", path)
				}
				n++
			}
		} else if !errors.Is(err, fs.ErrNotExist) && !errors.As(err, &refused) {
			_ = s.indexUser(userId, id) // unread: still listed
			return n, err
		}
	}
	_ = os.Remove(userDir) // only if empty
	return n, nil
}

// userDir returns the index folder of user `userId`.
func (s *StorageFile) userDir(userId string) string {
	sum := sha256.Sum256([]byte(userId))
	return filepath.Join(s.dir, fileUsersDir, hex.EncodeToString(sum[:]))
}

// userMarker returns the index entry of session `id` under user `userId`.
func (s *StorageFile) userMarker(userId, id string) string {
	return filepath.Join(s.userDir(userId), id)
}

// indexUser records session `id` under user `userId`.
func (s *StorageFile) indexUser(userId, id string) error {
	return writeMarker(s.userMarker(userId, id))
}

// writeMarker creates the user index entry `marker` and its folder.
func writeMarker(marker string) error {
	if _, err := os.Lstat(marker); err == nil {
		return nil
	}
	var err error
	// The cleaner or DestroyUser may remove the user's folder when it is
	// empty, between MkdirAll and WriteFile: then try again.
	for try := 0; try < 3; try++ {
		if err = os.MkdirAll(filepath.Dir(marker), fileModeDir); err != nil {
			return fileErr(err, "create user index", filepath.Dir(marker))
		}
		var f *os.File
		if f, err = openNoFollow(marker, os.O_WRONLY|os.O_CREATE, 0o600); err == nil {
			err = f.Close()
		}
		if !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if err != nil {
		return fileErr(err, "write user index", marker)
	}
	return nil
}

// Close stops the cleaner and waits for it to finish. It is idempotent; the
// storage keeps serving sessions after Close, without the background cleanup.
func (s *StorageFile) Close(ctx context.Context) error {
	s.cleaner.stop()
	return nil
}

// userMarkers returns the names of the sessions the user index lists for
// `userId`, and the index's folder.
func (s *StorageFile) userMarkers(userId string) ([]string, string, error) {
	if s.config.UserKey == "" {
		return nil, "", errNoUserKey("StorageFile")
	}
	var (
		userDir = s.userDir(userId)
		ids     []string
	)
	err := scanDir(userDir, func(e fs.DirEntry) bool {
		if IsValidSessionId(e.Name()) {
			ids = append(ids, e.Name())
		}
		return true
	})
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, userDir, nil
		}
		return nil, userDir, fileErr(err, "read user index", userDir)
	}
	return ids, userDir, nil
}

// Sessions returns the live sessions of user `userId` (see Admin.Sessions):
// it reads the user's index folder and each session file it lists, without
// touching them. A session's LastActive is its file's modification time.
func (s *StorageFile) Sessions(ctx context.Context, userId string) ([]SessionInfo, error) {
	list, err := s.userSessions(ctx, userId)
	return finishSessions(ctx, list), err
}

// userSessions is Sessions, unordered and without Current.
func (s *StorageFile) userSessions(ctx context.Context, userId string) ([]SessionInfo, error) {
	ids, _, err := s.userMarkers(userId)
	if err != nil {
		return nil, err
	}
	var (
		maxTTL = time.Duration(s.maxTTL.Load())
		now    = time.Now()
		list   = make([]SessionInfo, 0, len(ids))
	)
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		info, ok, err := s.sessionInfo(id, userId, maxTTL, now)
		if err != nil {
			return nil, err
		}
		if ok {
			list = append(list, info)
		}
	}
	return list, nil
}

// sessionInfo reads the file of the session stored as `name` and reports
// whether it is live and names user `userId`, with what Sessions tells of
// it.
func (s *StorageFile) sessionInfo(name, userId string, maxTTL time.Duration, now time.Time) (SessionInfo, bool, error) {
	f, ok, err := s.liveSession(name, maxTTL, now)
	if !ok || err != nil || userOf(f.data, s.config.UserKey) != userId {
		return SessionInfo{}, false, err
	}
	ip, ua := splitClient(f.meta.client)
	// The file's time is set while it is written, a moment before the
	// creation time the write stores may be taken.
	active := f.fi.ModTime()
	if active.Before(f.created) {
		active = f.created
	}
	return SessionInfo{Handle: name, Created: f.created, LastActive: active, ClientIP: ip, UserAgent: ua, order: active}, true, nil
}

// Users calls `fn` with each user that has live sessions, and their number
// (see Admin.Users). The index folders are named by a digest of the user
// id, so it reads the sessions each one lists, which also tell the user id.
// It reads the index fileScanBatch folders at a time.
func (s *StorageFile) Users(ctx context.Context, fn func(userId string, sessions int) bool) error {
	if s.config.UserKey == "" {
		return errNoUserKey("StorageFile")
	}
	var (
		usersDir = filepath.Join(s.dir, fileUsersDir)
		maxTTL   = time.Duration(s.maxTTL.Load())
		now      = time.Now()
		failed   error
	)
	err := scanDir(usersDir, func(e fs.DirEntry) bool {
		if failed = ctx.Err(); failed != nil {
			return false
		}
		if !e.IsDir() {
			return true
		}
		user, n, err := s.userOfDir(filepath.Join(usersDir, e.Name()), maxTTL, now)
		if err != nil {
			failed = err
			return false
		}
		return n == 0 || fn(user, n)
	})
	if failed != nil {
		return failed
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fileErr(err, "read user index", usersDir)
	}
	return nil
}

// userOfDir returns the user whose index folder is `dir` and the number of
// live sessions of that user it lists.
func (s *StorageFile) userOfDir(dir string, maxTTL time.Duration, now time.Time) (string, int, error) {
	var (
		user   string
		n      int
		failed error
	)
	err := scanDir(dir, func(e fs.DirEntry) bool {
		name := e.Name()
		if !IsValidSessionId(name) {
			return true
		}
		f, ok, err := s.liveSession(name, maxTTL, now)
		if err != nil {
			failed = err
			return false
		}
		u := userOf(f.data, s.config.UserKey)
		if !ok || u == "" || s.userDir(u) != dir || (user != "" && u != user) {
			return true
		}
		user = u
		n++
		return true
	})
	if failed != nil {
		return "", 0, failed
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", 0, fileErr(err, "read user index", dir)
	}
	return user, n, nil
}

// liveFile is a session file as liveSession read it.
type liveFile struct {
	data    map[string]any
	created time.Time
	meta    sessionMeta
	fi      fs.FileInfo
}

// liveSession reads and decodes the file of the session stored as `name`,
// and reports whether it holds a live session: there is one, not refused,
// not idle for longer than `maxTTL` (0: no bound), that decodes and is
// within MaxLifetime at `now`. Only I/O errors are returned.
func (s *StorageFile) liveSession(name string, maxTTL time.Duration, now time.Time) (liveFile, bool, error) {
	b, fi, err := s.readSessionFileInfo(s.sessionPath(name))
	if err != nil {
		var refused *refusedFileError
		if errors.Is(err, fs.ErrNotExist) || errors.As(err, &refused) {
			return liveFile{}, false, nil
		}
		return liveFile{}, false, err
	}
	if maxTTL > 0 && fi.ModTime().Add(maxTTL).Before(now) {
		return liveFile{}, false, nil
	}
	f := liveFile{fi: fi}
	if f.data, f.created, f.meta, err = s.envelope.decodeSessionMeta(name, string(b)); err != nil ||
		lifetimeLeft(f.created, s.config.MaxLifetime, time.Hour, now) <= 0 {
		return liveFile{}, false, nil
	}
	return f, true, nil
}

// CountUsers returns the number of users Users visits, at the same cost.
func (s *StorageFile) CountUsers(ctx context.Context) (int, error) {
	return countUsers(ctx, s.Users)
}

// userKeyName returns FileConfig.UserKey.
func (s *StorageFile) userKeyName() string { return s.config.UserKey }
