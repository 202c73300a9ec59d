package main

// Mail wire and storage structs. mailStructs_ffjson.go is generated from this file by
// `go generate` (internal/ffjsongen); this file holds only types, as the generator needs.

//go:generate go run ./internal/ffjsongen mailStructs.go

// MailRequest is the fields the mail commands read, decoded from the same frame as Request.
type MailRequest struct {
	ID        int64    `json:"ID,omitempty"`
	To        []string `json:"To,omitempty"`
	Cc        []string `json:"Cc,omitempty"`
	Subject   string   `json:"Subject,omitempty"`
	Text      string   `json:"Text,omitempty"`
	InReplyTo int64    `json:"InReplyTo,omitempty"`
	MTime     string   `json:"M_time,omitempty"`
	BeforeID  int64    `json:"BeforeID,omitempty"`
	Unread    *bool    `json:"Unread,omitempty"`
	Starred   *bool    `json:"Starred,omitempty"`
	Deleted   *bool    `json:"Deleted,omitempty"`
}

// Attachment is one stored attachment of an e-mail. Path is where it lies under -files-dir
// (never sent); URL is a signed download link made for each reply.
type Attachment struct {
	ID   string `json:"ID"`
	Name string `json:"Name"`
	Type string `json:"Type"`
	Size int64  `json:"Size"`
	URL  string `json:"URL,omitempty"`
	CID  string `json:"ContentID,omitempty"`
}

// Email is one e-mail of a mailbox, as stored and as sent to its owner: whole in GetEmail's
// answer; in lists, pushes and the other commands' answers a summary (mail_read.go) without Text
// and HTML, with Preview, at most 20 of To, Cc and Attachments (without URLs), and
// AttachmentCount.
type Email struct {
	ID          int64        `json:"ID"`
	MTime       string       `json:"M_time"`
	Folder      string       `json:"Folder,omitempty"`
	From        string       `json:"From,omitempty"`
	FromName    string       `json:"FromName,omitempty"`
	To          []string     `json:"To,omitempty"`
	Cc          []string     `json:"Cc,omitempty"`
	Subject     string       `json:"Subject,omitempty"`
	Text        string       `json:"Text,omitempty"`
	HTML        string       `json:"HTML,omitempty"`
	Preview     string       `json:"Preview,omitempty"`
	Date        string       `json:"Date,omitempty"`
	Unread      bool         `json:"Unread,omitempty"`
	Starred     bool         `json:"Starred,omitempty"`
	Deleted     bool         `json:"Deleted,omitempty"`
	Removed     bool         `json:"Removed,omitempty"`
	Attachments []Attachment `json:"Attachments,omitempty"`
	AttachCount int          `json:"AttachmentCount,omitempty"`
	MessageID   string       `json:"MessageID,omitempty"`
	InReplyTo   string       `json:"InReplyTo,omitempty"`
	// Auth is inbound mail's SPF, DKIM and DMARC verdict ("spf=pass dkim=none dmarc=none");
	// Unverified is set when neither SPF nor DKIM vouched for the From address (mail_auth.go).
	Auth       string `json:"Auth,omitempty"`
	Unverified bool   `json:"Unverified,omitempty"`
}

// EmailsReply answers GetAllEmails.
type EmailsReply struct {
	Cmd         string  `json:"cmd"`
	Rid         string  `json:"rid,omitempty"`
	Emails      []Email `json:"Emails"`
	More        bool    `json:"More"`
	MTime       string  `json:"M_time"`
	MailAddress string  `json:"MailAddress"`
	// The mailbox's size and quota in bytes, and whether inbound mail is being refused for it.
	MailUsed    int64 `json:"MailUsed"`
	MailQuota   int64 `json:"MailQuota"`
	MailboxFull bool  `json:"MailboxFull"`
}

// EmailReply answers a command about one e-mail (GetEmail with the whole e-mail, the others with
// its summary), and is the EmailReceived and EmailUpdated push (a summary).
type EmailReply struct {
	Cmd   string `json:"cmd"`
	Rid   string `json:"rid,omitempty"`
	Email Email  `json:"Email"`
}

// MandrillEvent is one event of Mandrill's inbound webhook (only the fields used: the raw
// message goes through the one parser).
type MandrillEvent struct {
	Event string      `json:"event"`
	TS    int64       `json:"ts"`
	Msg   MandrillMsg `json:"msg"`
}

// MandrillMsg is an inbound event's message.
type MandrillMsg struct {
	RawMsg    string `json:"raw_msg"`
	Email     string `json:"email"`
	FromEmail string `json:"from_email"`
	FromName  string `json:"from_name"`
	// Sender is the envelope sender where Mandrill gives one (SMS replies need it).
	Sender  string `json:"sender"`
	Subject string `json:"subject"`
	Text    string `json:"text"`
	HTML    string `json:"html"`
	SPF     struct {
		Result string `json:"result"`
	} `json:"spf"`
}
