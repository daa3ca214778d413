package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"strconv"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
)

// bar group of the chart: one label, one value per session size.
type group struct {
	label1, label2 string
	values         []float64 // per size; NaN: not measured
}

var (
	colText  = color.RGBA{0x22, 0x22, 0x22, 0xff}
	colGrid  = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
	colOne   = color.RGBA{0xc0, 0x39, 0x2b, 0xff}
	colSizes = []color.RGBA{{0x2e, 0x86, 0xc1, 0xff}, {0xf3, 0x9c, 0x12, 0xff}}
)

// writeChart draws the ratios gfsession ÷ gf as bars: the lifecycle
// benchmarks (1 core, serial) on top, the HTTP runs below.
func writeChart(path string, l lifecycle, h httpIndex) error {
	var life []group
	for _, be := range l.backends() {
		for _, mode := range []string{"rw", "ro"} {
			g := group{label1: be, label2: mode}
			for _, size := range sizes {
				g.values = append(g.values, l.speedup(rowKey{be, size, mode, "serial", 1}))
			}
			life = append(life, g)
		}
	}
	var web []group
	for _, be := range httpBackend {
		for _, ep := range []string{"GET", "POST"} {
			g := group{label1: be, label2: ep}
			for _, size := range sizes {
				g.values = append(g.values, h.ratio(be, size, ep))
			}
			web = append(web, g)
		}
	}
	for _, be := range []string{"redis", "redis-hash"} {
		g := group{label1: be, label2: "GET ÷ limit"}
		for _, size := range sizes {
			g.values = append(g.values, h.vsLimit(size, be))
		}
		web = append(web, g)
	}

	const W, H = 1400, 1000
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	reg, err := face(goregular.TTF, 15)
	if err != nil {
		return err
	}
	small, err := face(goregular.TTF, 13)
	if err != nil {
		return err
	}
	bold, err := face(gobold.TTF, 20)
	if err != nil {
		return err
	}
	text(img, bold, 30, 34, "gfsession ÷ gf's built-in storage of the same kind (same backend, same run): above the red line gfsession is faster", colText)
	// Legend.
	lx := 30
	for i, size := range []string{"session of 1 key", "session of 100 keys"} {
		fill(img, image.Rect(lx, 50, lx+16, 66), colSizes[i])
		text(img, reg, lx+22, 64, size, colText)
		lx += 200
	}
	panel(img, image.Rect(70, 90, W-70, 520), "Session lifecycle, operations per second (go test, 1 core, serial): rw = load + 3 gets + 1 set + close, ro = without the set", life, reg, small)
	panel(img, image.Rect(70, 570, W-70, 990), "HTTP requests per second through ghttp (GET: 3 session reads, POST: 1 session write); last groups: gfsession ÷ one raw Redis GET", web, reg, small)

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return png.Encode(f, img)
}

// panel draws one bar chart in r (r.Min.Y is the title line).
func panel(img *image.RGBA, r image.Rectangle, title string, groups []group, reg, small font.Face) {
	text(img, reg, r.Min.X-40, r.Min.Y+14, title, colText)
	plot := image.Rect(r.Min.X, r.Min.Y+30, r.Max.X, r.Max.Y-44)
	max := 1.0
	for _, g := range groups {
		for _, v := range g.values {
			if !math.IsNaN(v) && !math.IsInf(v, 0) && v > max {
				max = v
			}
		}
	}
	max = math.Ceil(max*1.15*2) / 2
	step := niceStep(max)
	y := func(v float64) int {
		return plot.Max.Y - int(float64(plot.Dy())*v/max)
	}
	for v := 0.0; v <= max+1e-9; v += step {
		yy := y(v)
		hline(img, plot.Min.X, plot.Max.X, yy, colGrid)
		text(img, small, plot.Min.X-48, yy+5, strconv.FormatFloat(v, 'f', -1, 64)+"×", colText)
	}
	// Bars.
	gw := float64(plot.Dx()) / float64(len(groups))
	for i, g := range groups {
		x0 := plot.Min.X + int(gw*float64(i))
		n := len(g.values)
		bw := int(gw*0.7) / n
		bx := x0 + int(gw*0.15)
		for j, v := range g.values {
			x := bx + j*bw
			if math.IsNaN(v) || math.IsInf(v, 0) {
				text(img, small, x+bw/2-8, plot.Max.Y-4, "n/a", colText)
				continue
			}
			top := y(math.Min(v, max))
			fill(img, image.Rect(x+1, top, x+bw-1, plot.Max.Y), colSizes[j%len(colSizes)])
			label := fmt.Sprintf("%.2f", v)
			text(img, small, x+bw/2-textWidth(small, label)/2, top-4, label, colText)
		}
		cx := x0 + int(gw/2)
		text(img, small, cx-textWidth(small, g.label1)/2, plot.Max.Y+18, g.label1, colText)
		text(img, small, cx-textWidth(small, g.label2)/2, plot.Max.Y+34, g.label2, colText)
	}
	// The line at 1 (gf).
	y1 := y(1)
	for x := plot.Min.X; x < plot.Max.X; x += 10 {
		hline(img, x, x+6, y1, colOne)
		hline(img, x, x+6, y1+1, colOne)
	}
	text(img, small, plot.Max.X+6, y1+5, "gf = 1", colOne)
	hline(img, plot.Min.X, plot.Max.X, plot.Max.Y, colText)
}

func niceStep(max float64) float64 {
	for _, s := range []float64{0.25, 0.5, 1, 2, 5, 10, 20, 50} {
		if max/s <= 8 {
			return s
		}
	}
	return 100
}

func face(ttf []byte, size float64) (font.Face, error) {
	f, err := opentype.Parse(ttf)
	if err != nil {
		return nil, err
	}
	return opentype.NewFace(f, &opentype.FaceOptions{Size: size, DPI: 72, Hinting: font.HintingFull})
}

func text(img *image.RGBA, f font.Face, x, y int, s string, c color.Color) {
	d := &font.Drawer{Dst: img, Src: image.NewUniform(c), Face: f, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func textWidth(f font.Face, s string) int {
	return font.MeasureString(f, s).Round()
}

func fill(img *image.RGBA, r image.Rectangle, c color.Color) {
	draw.Draw(img, r, image.NewUniform(c), image.Point{}, draw.Src)
}

func hline(img *image.RGBA, x0, x1, y int, c color.Color) {
	for x := x0; x < x1; x++ {
		img.Set(x, y, c)
	}
}
