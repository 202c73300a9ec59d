package main

// Wire and storage structs. structs_ffjson.go is generated from this file by `go generate`
// (internal/ffjsongen); this file holds only types, as the generator needs.

//go:generate go run ./internal/ffjsongen structs.go

// Request is every command a client sends; each command reads the fields it needs. JSON keys
// match without regard to case, so "username" and "Username" are the same field.
type Request struct {
	Cmd      string `json:"cmd"`
	Rid      string `json:"rid,omitempty"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	Session  string `json:"session,omitempty"`
	Token    string `json:"token,omitempty"`
	Email    string `json:"email,omitempty"`
	Phone    string `json:"phone,omitempty"`

	SecQuests []SecQuest `json:"secQuests,omitempty"`

	CID         string       `json:"CID,omitempty"`
	Name        string       `json:"Name,omitempty"`
	Members     []string     `json:"Members,omitempty"`
	FileURL     string       `json:"fileURL,omitempty"`
	Content     string       `json:"content,omitempty"`
	ClientID    string       `json:"client_id,omitempty"`
	MTime       string       `json:"M_time,omitempty"`
	NewReadTime string       `json:"NewReadTime,omitempty"`
	Typing      *bool        `json:"Typing,omitempty"`
	UnreadCount *int64       `json:"unread_count,omitempty"`
	Time        string       `json:"Time,omitempty"`
	ID          int64        `json:"ID,omitempty"`
	OldPassword string       `json:"OldPassword,omitempty"`
	NewPassword string       `json:"NewPassword,omitempty"`
	ProfilePic  string       `json:"ProfilePic,omitempty"`
	Message     string       `json:"Message,omitempty"`
	FriendUID   string       `json:"friend_UID,omitempty"`
	Device      string       `json:"device,omitempty"`
	OldDevice   string       `json:"old_device,omitempty"`
	Phones      []NamedPhone `json:"Phones,omitempty"`
	Emails      []NamedEmail `json:"Emails,omitempty"`
	// Contact verification: kind "email" or "phone", the code received, the phone's carrier.
	Kind    string `json:"kind,omitempty"`
	Code    string `json:"code,omitempty"`
	Carrier string `json:"carrier,omitempty"`
	// Uploads (GetS3PolicyData) and quota changes (AddToQuota, AddToQuotaUsed): bytes, MIME type.
	Size        int64  `json:"Size,omitempty"`
	ContentType string `json:"ContentType,omitempty"`

	// SyncConvos (database_functions_sync.go): the conversations to read and from when.
	Convos []SyncPoint `json:"Convos,omitempty"`

	// Edits, reactions, replies and search (database_functions_edit.go, search.go).
	ReplyTo    int64  `json:"reply_to,omitempty"`
	ReplyMTime string `json:"reply_m_time,omitempty"`
	Emoji      string `json:"emoji,omitempty"`
	On         bool   `json:"on,omitempty"`
	Query      string `json:"query,omitempty"`
	Before     string `json:"before,omitempty"`

	// frame is the request as received, for commands with fields of their own (MailRequest).
	frame string
}

// SecQuest is a security question with its answer (plain on the wire, hashed in storage).
type SecQuest struct {
	Question string `json:"Question"`
	Answer   string `json:"Answer"`
}

// NamedPhone and NamedEmail are MatchUsers' contact entries.
type NamedPhone struct {
	Name     string `json:"Name"`
	PhoneNum string `json:"PhoneNum"`
}

type NamedEmail struct {
	Name  string `json:"Name"`
	Email string `json:"Email"`
}

// ErrorReply answers a request that failed.
type ErrorReply struct {
	RetCmd string `json:"retcmd,omitempty"`
	Cmd    string `json:"cmd"`
	Rid    string `json:"rid,omitempty"`
	Error  string `json:"error"`
}

// NameCheck answers CheckUsername.
type NameCheck struct {
	Cmd       string `json:"cmd"`
	Rid       string `json:"rid,omitempty"`
	Username  string `json:"Username"`
	Available bool   `json:"Available"`
}

// AckReply acknowledges a command whose effect arrives as pushes.
type AckReply struct {
	Cmd      string `json:"cmd"`
	Rid      string `json:"rid,omitempty"`
	OK       bool   `json:"ok"`
	CID      string `json:"CID,omitempty"`
	ID       int64  `json:"id,omitempty"`
	MTime    string `json:"m_time,omitempty"`
	ClientID string `json:"client_id,omitempty"`
}

// FriendView is one entry of a user's friend lists.
type FriendView struct {
	Username   string `json:"Username"`
	ProfilePic string `json:"ProfilePic"`
	Message    string `json:"Message"`
}

// ConvoSummary is one conversation in the user view.
type ConvoSummary struct {
	CID         string `json:"CID"`
	Name        string `json:"Name"`
	MTime       string `json:"M_time"`
	UnreadCount int64  `json:"UnreadCount"`
}

// ScheduledView is one scheduled message in the user view.
type ScheduledView struct {
	ID      int64  `json:"ID"`
	CID     string `json:"CID"`
	Time    string `json:"Time"`
	Content string `json:"Content"`
}

// UserView is what a user sees of itself (DESIGN §3.3); never anything secret.
type UserView struct {
	Cmd                    string          `json:"cmd"`
	Rid                    string          `json:"rid,omitempty"`
	Username               string          `json:"Username"`
	Email                  string          `json:"Email"`
	Phone                  string          `json:"Phone"`
	AutoreplyMessage       string          `json:"AutoreplyMessage"`
	Friends                []FriendView    `json:"Friends"`
	IncomingPendingFriends []FriendView    `json:"IncomingPendingFriends"`
	OutgoingPendingFriends []FriendView    `json:"OutgoingPendingFriends"`
	CIDs                   []ConvoSummary  `json:"CIDs"`
	ScheduledMessages      []ScheduledView `json:"ScheduledMessages"`
	ProfilePic             string          `json:"ProfilePic"`
	Quota                  int64           `json:"Quota"`
	QuotaUsed              int64           `json:"QuotaUsed"`
	Blocked                []string        `json:"Blocked"`
	EmailVerified          bool            `json:"EmailVerified"`
	PhoneVerified          bool            `json:"PhoneVerified"`
	Carrier                string          `json:"Carrier"`
	MailAddress            string          `json:"MailAddress"`
	UnreadEmails           int64           `json:"UnreadEmails"`
	Session                string          `json:"session,omitempty"`
}

// PublicUser is what anyone may see of a user.
type PublicUser struct {
	Cmd        string `json:"cmd,omitempty"`
	Rid        string `json:"rid,omitempty"`
	Username   string `json:"Username"`
	ProfilePic string `json:"ProfilePic"`
	Phone      string `json:"Phone,omitempty"`
	Email      string `json:"Email,omitempty"`
	Name       string `json:"Name,omitempty"`
}

// MemberView is one member of a conversation as pushed to the members.
type MemberView struct {
	Username string `json:"username"`
	ReadTime string `json:"read_time"`
	Typing   bool   `json:"typing"`
}

// ConvoPush tells members about a conversation's (new) state.
type ConvoPush struct {
	Cmd     string       `json:"cmd"`
	Rid     string       `json:"rid,omitempty"`
	CID     string       `json:"CID"`
	Name    string       `json:"Name"`
	MTime   string       `json:"M_time"`
	Members []MemberView `json:"Members"`
	Files   []string     `json:"Files"`
	Removed []string     `json:"Removed,omitempty"`
}

// Message is one stored message, as sent to clients.
type Message struct {
	Cmd       string   `json:"cmd,omitempty"`
	CID       string   `json:"CID"`
	ID        int64    `json:"id"`
	FUsername string   `json:"f_username"`
	TUIDs     []string `json:"t_UIDs,omitempty"`
	MTime     string   `json:"m_time"`
	Content   string   `json:"content"`
	Kind      string   `json:"kind,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	// A change row (kind edit, delete, reaction) names the message it changes; a reaction row
	// says whether it was added and carries the message's reactions after it.
	Target int64 `json:"target,omitempty"`
	On     bool  `json:"on,omitempty"`
	// A message's current state: the last edit's m_time, deleted (content cleared), reactions,
	// and the m_time of the newest change row applied to it.
	Edited    string     `json:"edited,omitempty"`
	Changed   string     `json:"changed,omitempty"`
	Deleted   bool       `json:"deleted,omitempty"`
	Reactions []Reaction `json:"reactions,omitempty"`
	// Replies quote the start of the message answered; mentions are members named @username.
	ReplyTo  int64    `json:"reply_to,omitempty"`
	Quote    *Quote   `json:"quote,omitempty"`
	Mentions []string `json:"mentions,omitempty"`
	// ReplyMTime is the m_time of the message answered (server-side only).
	ReplyMTime string `json:"-"`
}

// Reaction is one emoji on a message with who reacted with it, in the order they did.
type Reaction struct {
	Emoji string   `json:"emoji"`
	Users []string `json:"users"`
}

// Quote is the start of the message a reply answers.
type Quote struct {
	FUsername string `json:"f_username"`
	Content   string `json:"content"`
}

// SearchReply answers SearchMessages.
type SearchReply struct {
	Cmd     string         `json:"cmd"`
	Rid     string         `json:"rid,omitempty"`
	Results []SearchResult `json:"Results"`
	More    bool           `json:"More,omitempty"`
}

// SearchResult is one message found, with a snippet whose matching words are marked.
type SearchResult struct {
	CID       string        `json:"CID"`
	ID        int64         `json:"id"`
	MTime     string        `json:"m_time"`
	FUsername string        `json:"f_username"`
	Snippet   []SnippetPart `json:"snippet"`
}

// SnippetPart is a run of a snippet's text, marked where it matched the query.
type SnippetPart struct {
	Text string `json:"text"`
	Mark bool   `json:"mark,omitempty"`
}

// ConvoData answers GetConvoData, GetMoreConvoMessages and GetAllConvoData.
type ConvoData struct {
	Cmd      string       `json:"cmd,omitempty"` // empty only inside a SyncReply
	Rid      string       `json:"rid,omitempty"`
	CID      string       `json:"CID"`
	Name     string       `json:"Name"`
	MTime    string       `json:"M_time"`
	Members  []MemberView `json:"Members"`
	Files    []string     `json:"Files"`
	Messages []Message    `json:"Messages"`
	// More says that this page of messages stops short: ask again from its last m_time.
	More bool `json:"More,omitempty"`
	// Error is set, alone, on a conversation of a SyncConvos reply that cannot be read.
	Error string `json:"error,omitempty"`
}

// SyncPoint is one conversation of a SyncConvos request: read it as GetConvoData would.
type SyncPoint struct {
	CID   string `json:"CID"`
	MTime string `json:"M_time,omitempty"`
}

// SyncReply answers SyncConvos: the conversations answered, in the order asked.
type SyncReply struct {
	Cmd    string      `json:"cmd"`
	Rid    string      `json:"rid,omitempty"`
	Convos []ConvoData `json:"Convos"`
}

// FilesPush tells the members of a conversation that a file was added to its list.
type FilesPush struct {
	Cmd     string `json:"cmd"`
	CID     string `json:"CID"`
	FileURL string `json:"fileURL"`
}

// StatusPush is UpdateUserStatus as pushed to the members.
type StatusPush struct {
	Cmd         string `json:"cmd"`
	CID         string `json:"CID"`
	Username    string `json:"Username"`
	NewReadTime string `json:"NewReadTime,omitempty"`
	Typing      *bool  `json:"Typing,omitempty"` // absent when the update is only a read time
}

// UserRecord is a user as stored in the quick store (namespace users, set username).
type UserRecord struct {
	Username         string       `json:"Username"`
	PasswordHash     string       `json:"PasswordHash"`
	Email            string       `json:"Email"`
	Phone            string       `json:"Phone"`
	ProfilePic       string       `json:"ProfilePic"`
	AutoreplyMessage string       `json:"AutoreplyMessage"`
	SecQuests        []SecQuest   `json:"SecQuests"`
	Friends          []FriendView `json:"Friends"`
	Incoming         []FriendView `json:"Incoming"`
	Outgoing         []FriendView `json:"Outgoing"`
	// Convos are the user's conversations, read from their own bins (quickstore_membership.go).
	Convos map[string]*UserConvo `json:"-"`
	// LegacyConvos is where records written before those bins kept them.
	LegacyConvos map[string]*UserConvo `json:"Convos,omitempty"`
	// nConvos is the number of conversations when Convos was not read (getUserData).
	nConvos   int
	Devices   map[string][]string `json:"Devices"`
	Quota     int64               `json:"Quota"`
	QuotaUsed int64               `json:"QuotaUsed"`
	Created   string              `json:"Created"`
	// SessionEpoch invalidates every resume token issued before it changed.
	SessionEpoch int64 `json:"SessionEpoch"`
	// UserID tells this user from a later one registered under the same name.
	UserID string `json:"UserID"`
	// Blocked are the users who may not add this user to conversations or befriend it.
	Blocked []string `json:"Blocked,omitempty"`
	// Tokens are the hashes of the user's resume tokens, oldest first, so that their number
	// stays bounded.
	Tokens []string `json:"Tokens,omitempty"`
	// EmailVerified and PhoneVerified: the user proved the address or number with a code;
	// only then is it claimed in the lookup records that contact discovery reads.
	EmailVerified bool `json:"EmailVerified,omitempty"`
	PhoneVerified bool `json:"PhoneVerified,omitempty"`
	// Carrier is the phone's carrier, for the SMS bridge (a key of smsGateways).
	Carrier string `json:"Carrier,omitempty"`
	// Codes are the verification codes sent and not yet used, by kind.
	Codes map[string]*PendingCode `json:"Codes,omitempty"`
	// Deleting marks a user whose deletion has begun: it cannot log in, and its name stays
	// taken until the deletion is complete.
	Deleting bool `json:"Deleting,omitempty"`
}

// UserConvo is a user's own state in one conversation.
type UserConvo struct {
	// SyncedMtime is the M_time the user's client reported having synced to.
	SyncedMtime string `json:"SyncedMtime,omitempty"`
	// Unread and UnreadAt are an explicitly set unread count and the conversation's M_time when
	// it was set; messages from others after UnreadAt are added to it.
	Unread   int64  `json:"Unread,omitempty"`
	UnreadAt string `json:"UnreadAt,omitempty"`
}

// ConvoRecord is a conversation's metadata (namespace convos, set convos, key CID).
type ConvoRecord struct {
	CID       string            `json:"CID"`
	Name      string            `json:"Name"`
	Members   []string          `json:"Members"`
	ReadTimes map[string]string `json:"ReadTimes"`
	Files     []string          `json:"Files"`
	Created   string            `json:"Created"`
	// Autoreplies holds the members' autoreply messages (by upper-case name), copied here so
	// that sending a message needs no read of the recipients' records; AutoreplySent marks
	// the members whose autoreply was sent since they last wrote here.
	Autoreplies   map[string]string `json:"Autoreplies,omitempty"`
	AutoreplySent map[string]bool   `json:"AutoreplySent,omitempty"`
}

// PendingCode is a verification code sent to an address or number.
type PendingCode struct {
	Value   string `json:"Value"` // the address or number it was sent to
	Hash    string `json:"Hash"`  // SHA-256 of the code
	Expires string `json:"Expires"`
	Tries   int    `json:"Tries"`
	Carrier string `json:"Carrier,omitempty"` // for a phone: the carrier the code went through
}

// SessionRecord is a resumable login (namespace users, set session, key SHA-256 of the token).
type SessionRecord struct {
	Username string `json:"Username"`
	Expires  string `json:"Expires"`
	Epoch    int64  `json:"Epoch"`
	UserID   string `json:"UserID"`
}

// LookupRecord maps an e-mail address or phone number to its user (sets email and phone).
type LookupRecord struct {
	Username string `json:"Username"`
}

// ResetQuestions answers GetPasswordResetUser.
type ResetQuestions struct {
	Cmd       string   `json:"cmd"`
	Rid       string   `json:"rid,omitempty"`
	Username  string   `json:"Username"`
	Questions []string `json:"Questions"`
}

// ResetResult answers ResetUserPassword.
type ResetResult struct {
	Cmd     string `json:"cmd"`
	Rid     string `json:"rid,omitempty"`
	Success string `json:"success"`
}

// MatchedUsers answers MatchUsers.
type MatchedUsers struct {
	Cmd   string       `json:"cmd"`
	Rid   string       `json:"rid,omitempty"`
	Users []PublicUser `json:"Users"`
}

// UploadTarget answers GetS3PolicyData: where and how to upload the file described.
type UploadTarget struct {
	Cmd     string            `json:"cmd"`
	Rid     string            `json:"rid,omitempty"`
	Method  string            `json:"Method"`
	URL     string            `json:"URL"`
	Fields  map[string]string `json:"Fields"`
	FileURL string            `json:"FileURL"`
	Expires string            `json:"Expires"`
}

// FileToken answers GetFileToken: appended as ?t= to conversation file URLs.
type FileToken struct {
	Cmd     string `json:"cmd"`
	Rid     string `json:"rid,omitempty"`
	Token   string `json:"Token"`
	Expires string `json:"Expires"`
}

// QuotaReply answers AddToQuota and AddToQuotaUsed.
type QuotaReply struct {
	Cmd       string `json:"cmd"`
	Rid       string `json:"rid,omitempty"`
	Username  string `json:"Username"`
	Quota     int64  `json:"Quota"`
	QuotaUsed int64  `json:"QuotaUsed"`
}

// UploadResult answers an upload to this server.
type UploadResult struct {
	FileURL string `json:"FileURL"`
	Type    string `json:"Type"`
	Size    int64  `json:"Size"`
	Thumb   bool   `json:"Thumb"`
}

// FileRecord is an uploaded file (namespace convos, set files, key its id).
type FileRecord struct {
	ID          string `json:"ID"`
	Owner       string `json:"Owner"`
	OwnerID     string `json:"OwnerID"`
	CID         string `json:"CID"` // a conversation, or "profile"
	Name        string `json:"Name"`
	Size        int64  `json:"Size"`
	ContentType string `json:"ContentType"` // as declared
	Type        string `json:"Type"`        // as sniffed from the stored bytes
	State       string `json:"State"`       // pending, uploading, stored
	Counted     bool   `json:"Counted"`     // its Size is in the owner's QuotaUsed
	Expires     string `json:"Expires"`     // of the upload URL
	Thumb       bool   `json:"Thumb"`
	Created     string `json:"Created"`
}

// SecretRecord is a server-wide secret shared by every instance (set secrets).
type SecretRecord struct {
	Value string `json:"Value"`
}
