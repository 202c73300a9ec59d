package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"time"
	"unicode/utf8"
)

// Bots (DESIGN §3.2, Bots): "@giphy <query>" answers with a GIF from Giphy's search API,
// "@forecast <place>" with a three-day forecast from Open-Meteo. The user's message is stored,
// delivered and acknowledged first; the bot runs afterwards, bounded in time and in number, and
// its answer is an ordinary stored message of kind "bot" whose content is JSON, never HTML.

// BotConfig is the bots' part of Config.
type BotConfig struct {
	GiphyKey     string
	GiphyURL     string
	GeocodingURL string
	ForecastURL  string

	botTimeout time.Duration // set by tests only (0: botDeadline)
}

const (
	defaultGiphyURL     = "https://api.giphy.com"
	defaultGeocodingURL = "https://geocoding-api.open-meteo.com"
	defaultForecastURL  = "https://api.open-meteo.com"

	botDeadline    = 2 * time.Second
	botsInFlight   = 32
	botsPerUser    = 4 // of botsInFlight: one user cannot take every slot
	maxBotQuery    = 200
	maxBotResponse = 1 << 20
	forecastDays   = 3
)

// BotAnswer is a bot message's content (DESIGN §3.2, Bots).
type BotAnswer struct {
	Bot         string        `json:"bot"`
	Type        string        `json:"type"`
	Query       string        `json:"query"`
	Text        string        `json:"text"`
	URL         string        `json:"url,omitempty"`
	Width       int           `json:"width,omitempty"`
	Height      int           `json:"height,omitempty"`
	Link        string        `json:"link,omitempty"`
	Attribution string        `json:"attribution,omitempty"`
	Place       string        `json:"place,omitempty"`
	Days        []ForecastDay `json:"days,omitempty"`
}

// ForecastDay is one day of a forecast answer.
type ForecastDay struct {
	Date    string  `json:"date"`
	Min     float64 `json:"min"`
	Max     float64 `json:"max"`
	Code    int     `json:"code"`
	Summary string  `json:"summary"`
}

type botRunner struct {
	db      *Database
	client  *http.Client
	slots   chan struct{}
	perUser *addrCounter // requests in flight per user (upper case), at most botsPerUser
}

func newBots(db *Database) *botRunner {
	return &botRunner{db: db, client: &http.Client{Timeout: 2 * botDeadline}, slots: make(chan struct{}, botsInFlight),
		perUser: newAddrCounter(botsPerUser)}
}

// parseBotCommand finds "@giphy q" or "@forecast q" at the start of a message.
func parseBotCommand(content string) (bot, query string, ok bool) {
	for _, b := range []string{"giphy", "forecast"} {
		prefix := "@" + b + " "
		if len(content) > len(prefix) && strings.EqualFold(content[:len(prefix)], prefix) {
			q := strings.TrimSpace(content[len(prefix):])
			if q == "" || utf8.RuneCountInString(q) > maxBotQuery {
				return "", "", false
			}
			return b, q, true
		}
	}
	return "", "", false
}

// runBots answers a user's stored message if it asks a bot. It returns at once; the answer
// follows asynchronously.
func (db *Database) runBots(c *ConvoRecord, m *Message) {
	b := db.bots
	if b == nil || m.Kind != "text" {
		return
	}
	bot, query, ok := parseBotCommand(m.Content)
	if !ok {
		return
	}
	go func() {
		defer func() {
			if r := recover(); r != nil { // one bad answer must not take the server down
				slog.Error("bot panicked", "bot", bot, "panic", r, "stack", string(debug.Stack()))
			}
		}()
		b.post(c.CID, bot, b.askWithin(upperName(m.FUsername), bot, query))
	}()
}

// askWithin runs a bot if the instance has a slot free and the user has fewer than botsPerUser
// requests in flight; otherwise the answer says to try again, at once (nothing waits).
func (b *botRunner) askWithin(user, bot, query string) *BotAnswer {
	if !b.perUser.acquire(user) {
		return botError(bot, query, fmt.Sprintf("You have %d bot requests running; try again when they have answered.", botsPerUser))
	}
	defer b.perUser.release(user)
	select {
	case b.slots <- struct{}{}:
		defer func() { <-b.slots }()
		return b.ask(bot, query)
	default:
		return botError(bot, query, "The bot is busy, try again in a moment.")
	}
}

// ask runs one bot within its deadline; any failure becomes an answer that says so.
func (b *botRunner) ask(bot, query string) *BotAnswer {
	ctx, cancel := context.WithTimeout(context.Background(), cmpDuration(b.db.cfg.botTimeout, botDeadline))
	defer cancel()
	var ans *BotAnswer
	var err error
	switch bot {
	case "giphy":
		ans, err = b.giphy(ctx, query)
	case "forecast":
		ans, err = b.forecast(ctx, query)
	}
	if err != nil {
		var ce *ClientError
		switch {
		case errors.As(err, &ce):
			return botError(bot, query, ce.Msg)
		case ctx.Err() != nil:
			slog.Warn("bot timed out", "bot", bot, "err", err)
			return botError(bot, query, fmt.Sprintf("The %s service did not answer in time.", botService(bot)))
		}
		slog.Warn("bot failed", "bot", bot, "err", err)
		return botError(bot, query, fmt.Sprintf("The %s service failed; try again later.", botService(bot)))
	}
	return ans
}

func botService(bot string) string {
	if bot == "giphy" {
		return "GIPHY"
	}
	return "forecast"
}

func botError(bot, query, text string) *BotAnswer {
	return &BotAnswer{Bot: bot, Type: "error", Query: query, Text: text}
}

func cmpDuration(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

// post stores the answer as a message from the bot and delivers it to the conversation's
// current members.
func (b *botRunner) post(cid, bot string, ans *BotAnswer) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	content, err := json.Marshal(ans)
	if err != nil {
		slog.Error("bot answer", "err", err)
		return
	}
	c, err := b.db.getConvo(ctx, cid)
	if err != nil {
		slog.Warn("bot answer: reading conversation", "cid", cid, "err", err)
		return
	}
	m := &Message{Cmd: "SendMessage", CID: cid, FUsername: "@" + bot, Content: string(content), Kind: "bot"}
	if _, err := b.db.insertMessage(ctx, b.db.pool, m); err != nil {
		slog.Warn("bot answer: storing", "cid", cid, "err", err)
		return
	}
	if err := b.db.deliver(c, m); err != nil {
		slog.Error("bot answer: delivering", "cid", cid, "err", err)
	}
}

// getJSON fetches u into v, failing on a non-2xx status.
func (b *botRunner) getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	// Errors name the host and path only: the query may hold an API key, and logs must not.
	where := req.URL.Host + req.URL.Path
	resp, err := b.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("GET %s: %w", where, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("GET %s: status %d", where, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBotResponse)).Decode(v); err != nil {
		return fmt.Errorf("reading %s: %w", where, err)
	}
	return nil
}

// giphySearch is the part of Giphy's search response we read.
type giphySearch struct {
	Data []struct {
		Title  string `json:"title"`
		URL    string `json:"url"`
		Images struct {
			FixedHeight struct {
				URL    string `json:"url"`
				Width  string `json:"width"`
				Height string `json:"height"`
			} `json:"fixed_height"`
		} `json:"images"`
	} `json:"data"`
}

func (b *botRunner) giphy(ctx context.Context, query string) (*BotAnswer, error) {
	cfg := b.db.cfg.BotConfig
	if notConfigured(cfg.GiphyKey) {
		return nil, clientErr("GIPHY is not configured on this server.")
	}
	base := strings.TrimRight(cmpOr(cfg.GiphyURL, defaultGiphyURL), "/")
	q := url.Values{"api_key": {cfg.GiphyKey}, "q": {query}, "limit": {"1"}, "rating": {"g"}}
	var res giphySearch
	if err := b.getJSON(ctx, base+"/v1/gifs/search?"+q.Encode(), &res); err != nil {
		return nil, fmt.Errorf("searching Giphy: %w", err)
	}
	if len(res.Data) == 0 {
		return nil, clientErr("No GIF found for %q.", query)
	}
	g := res.Data[0]
	img := g.Images.FixedHeight
	if !safeMediaURL(img.URL, base) {
		return nil, fmt.Errorf("giphy answered an unusable image URL %q", img.URL)
	}
	ans := &BotAnswer{Bot: "giphy", Type: "gif", Query: query, Text: strings.TrimSpace(g.Title),
		URL: img.URL, Attribution: "Powered by GIPHY"}
	ans.Width, ans.Height = atoiOr0(img.Width), atoiOr0(img.Height)
	if safeMediaURL(g.URL, base) {
		ans.Link = g.URL
	}
	if ans.Text == "" {
		ans.Text = "GIF for " + query
	}
	return ans, nil
}

// safeMediaURL accepts https URLs, and http ones only when the API itself is configured on
// plain http (local test servers).
func safeMediaURL(raw, apiBase string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil {
		return false
	}
	return u.Scheme == "https" || (u.Scheme == "http" && strings.HasPrefix(apiBase, "http://"))
}

func atoiOr0(s string) int {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil || n < 0 || n > 10000 {
		return 0
	}
	return n
}

// geocoding is the part of Open-Meteo's geocoding response we read.
type geocoding struct {
	Results []struct {
		Name      string  `json:"name"`
		Latitude  float64 `json:"latitude"`
		Longitude float64 `json:"longitude"`
		Country   string  `json:"country"`
		Admin1    string  `json:"admin1"`
	} `json:"results"`
}

// forecastResponse is the part of Open-Meteo's forecast response we read.
type forecastResponse struct {
	Daily struct {
		Time        []string  `json:"time"`
		WeatherCode []int     `json:"weather_code"`
		Max         []float64 `json:"temperature_2m_max"`
		Min         []float64 `json:"temperature_2m_min"`
	} `json:"daily"`
}

func (b *botRunner) forecast(ctx context.Context, query string) (*BotAnswer, error) {
	cfg := b.db.cfg.BotConfig
	geoBase := strings.TrimRight(cmpOr(cfg.GeocodingURL, defaultGeocodingURL), "/")
	var geo geocoding
	gq := url.Values{"name": {query}, "count": {"1"}, "language": {"en"}, "format": {"json"}}
	if err := b.getJSON(ctx, geoBase+"/v1/search?"+gq.Encode(), &geo); err != nil {
		return nil, fmt.Errorf("geocoding: %w", err)
	}
	if len(geo.Results) == 0 {
		return nil, clientErr("No place called %q found.", query)
	}
	p := geo.Results[0]
	fcBase := strings.TrimRight(cmpOr(cfg.ForecastURL, defaultForecastURL), "/")
	fq := url.Values{
		"latitude": {fmt.Sprintf("%.4f", p.Latitude)}, "longitude": {fmt.Sprintf("%.4f", p.Longitude)},
		"daily":    {"weather_code,temperature_2m_max,temperature_2m_min"},
		"timezone": {"auto"}, "forecast_days": {fmt.Sprint(forecastDays)},
	}
	var fc forecastResponse
	if err := b.getJSON(ctx, fcBase+"/v1/forecast?"+fq.Encode(), &fc); err != nil {
		return nil, fmt.Errorf("forecast: %w", err)
	}
	d := fc.Daily
	n := min(len(d.Time), len(d.WeatherCode), len(d.Max), len(d.Min), forecastDays)
	if n == 0 {
		return nil, errors.New("forecast without days")
	}
	place := joinNonEmpty(", ", p.Name, p.Admin1, p.Country)
	ans := &BotAnswer{Bot: "forecast", Type: "forecast", Query: query, Place: place,
		Link: "https://open-meteo.com/", Attribution: "Weather data by Open-Meteo.com"}
	parts := []string{}
	for i := range n {
		day := ForecastDay{Date: d.Time[i], Min: round1(d.Min[i]), Max: round1(d.Max[i]), Code: d.WeatherCode[i],
			Summary: wmoSummary(d.WeatherCode[i])}
		ans.Days = append(ans.Days, day)
		parts = append(parts, fmt.Sprintf("%s %g–%g °C, %s", dayLabel(i, day.Date), day.Min, day.Max, day.Summary))
	}
	ans.Text = place + ": " + strings.Join(parts, "; ")
	return ans, nil
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

func dayLabel(i int, date string) string {
	switch i {
	case 0:
		return "today"
	case 1:
		return "tomorrow"
	}
	return date
}

func joinNonEmpty(sep string, parts ...string) string {
	out := []string{}
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" && (len(out) == 0 || out[len(out)-1] != p) {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}

// wmoSummary names a WMO weather interpretation code, as Open-Meteo documents them.
func wmoSummary(code int) string {
	switch code {
	case 0:
		return "clear sky"
	case 1:
		return "mainly clear"
	case 2:
		return "partly cloudy"
	case 3:
		return "overcast"
	case 45, 48:
		return "fog"
	case 51, 53, 55:
		return "drizzle"
	case 56, 57:
		return "freezing drizzle"
	case 61:
		return "light rain"
	case 63:
		return "rain"
	case 65:
		return "heavy rain"
	case 66, 67:
		return "freezing rain"
	case 71, 73, 75, 77:
		return "snow"
	case 80, 81, 82:
		return "rain showers"
	case 85, 86:
		return "snow showers"
	case 95:
		return "thunderstorm"
	case 96, 99:
		return "thunderstorm with hail"
	}
	return "unknown weather"
}
