package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
)

// benchRow is one line of `go test -bench BenchmarkLifecycle` output.
type benchRow struct {
	Backend, Impl, Size, Mode, Variant string
	CPU                                int
	N                                  int64
	Metrics                            map[string]float64 // unit -> value: ns/op, B/op, allocs/op, cmds/op, ...
}

// rowKey identifies a row without its implementation.
type rowKey struct {
	Backend, Size, Mode, Variant string
	CPU                          int
}

func (r benchRow) key() rowKey {
	return rowKey{r.Backend, r.Size, r.Mode, r.Variant, r.CPU}
}

// runGoTest runs the lifecycle benchmarks in the module root, copying the
// output to w and to the file `out`.
func runGoTest(ctx context.Context, root string, args []string, out string, w io.Writer) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Stdout = io.MultiWriter(f, w)
	cmd.Stderr = io.MultiWriter(f, w)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// parseGoTest reads benchmark lines of BenchmarkLifecycle,
// BenchmarkManagerFloor and BenchmarkPeer.
func parseGoTest(path string) ([]benchRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []benchRow
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 {
			continue
		}
		var name string
		switch {
		case strings.HasPrefix(fields[0], "BenchmarkLifecycle/"):
			name = strings.TrimPrefix(fields[0], "BenchmarkLifecycle/")
		case strings.HasPrefix(fields[0], "BenchmarkPeer/"):
			// BenchmarkPeer/<backend>/<size>/<mode>/<impl>: as backend
			// "peer-<backend>", impl gfsession or scs, serial.
			p := strings.Split(strings.TrimPrefix(fields[0], "BenchmarkPeer/"), "/")
			if len(p) != 4 {
				continue
			}
			impl, cpu, _ := strings.Cut(p[3], "-")
			if cpu != "" {
				cpu = "-" + cpu
			}
			name = "peer-" + p[0] + "/" + impl + "/" + p[1] + "/" + p[2] + "/serial" + cpu
		case strings.HasPrefix(fields[0], "BenchmarkManagerFloor/"):
			// The floor: no storage work, as impl "floor" of backend "manager".
			name = "manager/floor/" + strings.TrimPrefix(fields[0], "BenchmarkManagerFloor/")
		default:
			continue
		}
		cpu := 1
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if n, err := strconv.Atoi(name[i+1:]); err == nil {
				cpu, name = n, name[:i]
			}
		}
		parts := strings.Split(name, "/")
		if len(parts) != 5 {
			continue
		}
		n, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			continue
		}
		r := benchRow{Backend: parts[0], Impl: parts[1], Size: parts[2], Mode: parts[3], Variant: parts[4],
			CPU: cpu, N: n, Metrics: map[string]float64{}}
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				break
			}
			r.Metrics[fields[i+1]] = v
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return medianRows(rows), nil
}

// medianRows keeps, of the rows a `go test -count N` run repeats, the one
// with the median ns/op (the lower middle one of an even number), in the
// order each row first appeared.
func medianRows(rows []benchRow) []benchRow {
	type id struct {
		k    rowKey
		impl string
	}
	var (
		order []id
		runs  = map[id][]benchRow{}
	)
	for _, r := range rows {
		k := id{r.key(), r.Impl}
		if _, ok := runs[k]; !ok {
			order = append(order, k)
		}
		runs[k] = append(runs[k], r)
	}
	out := make([]benchRow, 0, len(order))
	for _, k := range order {
		rs := runs[k]
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].Metrics["ns/op"] < rs[j].Metrics["ns/op"] })
		out = append(out, rs[(len(rs)-1)/2])
	}
	return out
}
