package demo

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Message is one Slack message.
type Message struct {
	TS   string `json:"ts" jsonschema:"message time, RFC 3339"`
	User string `json:"user"`
	Text string `json:"text"`
}

type slackChannel struct {
	name     string
	topic    string
	members  []string
	messages []Message
}

type slack struct {
	mu       sync.Mutex
	channels map[string]*slackChannel
}

// ChannelInfo describes a channel.
type ChannelInfo struct {
	Name         string `json:"name" jsonschema:"channel name with its leading #"`
	Topic        string `json:"topic"`
	MemberCount  int    `json:"member_count"`
	MessageCount int    `json:"message_count"`
}

type ListChannelsArgs struct{}

type ListChannelsOutput struct {
	Channels []ChannelInfo `json:"channels"`
}

type ReadHistoryArgs struct {
	Channel string `json:"channel" jsonschema:"channel name, with or without #, e.g. #general"`
	Limit   int    `json:"limit,omitempty" jsonschema:"how many of the latest messages to return (1-200, default 20)"`
}

type ReadHistoryOutput struct {
	Channel  string    `json:"channel"`
	Messages []Message `json:"messages" jsonschema:"the latest messages, oldest first"`
}

type PostMessageArgs struct {
	Channel string `json:"channel" jsonschema:"channel name, with or without #"`
	Text    string `json:"text" jsonschema:"message text"`
}

type PostMessageOutput struct {
	Channel string  `json:"channel"`
	Message Message `json:"message"`
}

func newSlackServer() *mcp.Server {
	sl := &slack{channels: map[string]*slackChannel{}}
	for _, c := range seedSlack() {
		sl.channels[c.name] = c
	}
	s := newServer("slack", "Demo Slack", "A team chat with channels #general, #security and #deploys.")
	mcp.AddTool(s, &mcp.Tool{
		Name:        "list_channels",
		Description: "List the channels.",
		Annotations: readOnly("List channels"),
	}, sl.listChannels)
	mcp.AddTool(s, &mcp.Tool{
		Name:        "read_history",
		Description: "Read the latest messages of a channel, oldest first.",
		Annotations: readOnly("Read channel history"),
	}, sl.readHistory)
	mcp.AddTool(s, &mcp.Tool{
		Name:        "post_message",
		Description: "Post a message to a channel.",
		Annotations: writes("Post message", false, false),
	}, sl.postMessage)
	return s
}

// channel finds a channel by name; sl.mu must be held.
func (sl *slack) channel(name string) (*slackChannel, error) {
	if err := required("channel", name); err != nil {
		return nil, err
	}
	n := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(name)), "#")
	c, ok := sl.channels[n]
	if !ok {
		return nil, fmt.Errorf("channel #%s does not exist (channels: %s)", n, strings.Join(sl.names(), ", "))
	}
	return c, nil
}

func (sl *slack) names() []string {
	var out []string
	for n := range sl.channels {
		out = append(out, "#"+n)
	}
	slices.Sort(out)
	return out
}

func (sl *slack) listChannels(_ context.Context, _ *mcp.CallToolRequest, _ ListChannelsArgs) (*mcp.CallToolResult, ListChannelsOutput, error) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	out := ListChannelsOutput{Channels: []ChannelInfo{}}
	lines := []string{fmt.Sprintf("%d channel(s):", len(sl.channels))}
	for _, n := range sl.names() {
		c := sl.channels[strings.TrimPrefix(n, "#")]
		ci := ChannelInfo{Name: n, Topic: c.topic, MemberCount: len(c.members), MessageCount: len(c.messages)}
		out.Channels = append(out.Channels, ci)
		lines = append(lines, fmt.Sprintf("  %s - %s (%d members, %d messages)", ci.Name, ci.Topic, ci.MemberCount, ci.MessageCount))
	}
	return textLines(lines), out, nil
}

func (sl *slack) readHistory(_ context.Context, _ *mcp.CallToolRequest, in ReadHistoryArgs) (*mcp.CallToolResult, ReadHistoryOutput, error) {
	limit := in.Limit
	if limit == 0 {
		limit = 20
	}
	if limit < 1 || limit > 200 {
		return nil, ReadHistoryOutput{}, fmt.Errorf("limit %d is out of range: use 1-200", in.Limit)
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	c, err := sl.channel(in.Channel)
	if err != nil {
		return nil, ReadHistoryOutput{}, err
	}
	msgs := c.messages[max(0, len(c.messages)-limit):]
	out := ReadHistoryOutput{Channel: "#" + c.name, Messages: slices.Clone(msgs)}
	if out.Messages == nil {
		out.Messages = []Message{}
	}
	lines := []string{fmt.Sprintf("#%s, last %d message(s):", c.name, len(msgs))}
	for _, m := range msgs {
		lines = append(lines, fmt.Sprintf("  [%s] %s: %s", m.TS, m.User, m.Text))
	}
	return textLines(lines), out, nil
}

func (sl *slack) postMessage(_ context.Context, _ *mcp.CallToolRequest, in PostMessageArgs) (*mcp.CallToolResult, PostMessageOutput, error) {
	if err := required("text", in.Text); err != nil {
		return nil, PostMessageOutput{}, err
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	c, err := sl.channel(in.Channel)
	if err != nil {
		return nil, PostMessageOutput{}, err
	}
	m := Message{TS: now(), User: agentUser, Text: in.Text}
	c.messages = append(c.messages, m)
	return textResult("Posted to #%s at %s.", c.name, m.TS), PostMessageOutput{Channel: "#" + c.name, Message: m}, nil
}

func seedSlack() []*slackChannel {
	m := func(ts, user, text string) Message { return Message{TS: ts, User: user, Text: text} }
	return []*slackChannel{
		{name: "general", topic: "Company-wide announcements", members: []string{"alice", "bob", "carol", "dave", "erin"},
			messages: []Message{
				m("2025-09-08T09:00:00Z", "dave", "Good morning! All-hands moved to Thursday 15:00."),
				m("2025-09-09T12:30:00Z", "bob", "Lunch-and-learn today: how the PBAC gateway decides tool calls."),
				m("2025-09-10T08:45:00Z", "erin", "Reminder: expense reports are due Friday."),
			}},
		{name: "security", topic: "Security questions and incident coordination", members: []string{"alice", "carol", "erin"},
			messages: []Message{
				m("2025-09-05T10:10:00Z", "erin", "Scanner tokens will become single-use next sprint (SEC-13)."),
				m("2025-09-08T14:25:00Z", "alice", "Reminder: nobody reads /prod/secrets directly, agents included."),
				m("2025-09-10T11:00:00Z", "carol", "Requesting read access to the roadmap for the contractor review."),
			}},
		{name: "deploys", topic: "Deploy announcements (bots post here)", members: []string{"alice", "bob", "jenkins"},
			messages: []Message{
				m("2025-09-09T17:02:00Z", "jenkins", "deploy-prod #41 SUCCESS: platform/api 2.13.0 to production"),
				m("2025-09-10T09:15:00Z", "jenkins", "build-web #88 FAILURE: nightly lint"),
				m("2025-09-10T09:40:00Z", "bob", "Fixed the lint error, rebuilding."),
			}},
	}
}
