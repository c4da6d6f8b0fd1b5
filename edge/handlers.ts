// What each client frame does, one handler per frame type (docs/protocol.md, "Client frames").
// A handler runs for an authenticated, live session with a validated frame; it authorizes the
// frame itself (membership, ownership, contacts), asks the socket's limits before doing work,
// and answers with exactly one reply or throws a typed error (the session sends it). A new frame
// type is a schema in protocol.ts and an entry in FRAME_HANDLERS: the map's type makes it total.
import { NatterError } from "../core/index.ts";
import type { Conversation, ImageRef } from "../streams/index.ts";
import type { TokenClaims } from "./auth.ts";
import type { SocketLimits } from "./limits.ts";
import { TYPING_TTL_MS, type ClientFrame, type ServerFrame } from "./protocol.ts";
import type { PushTarget, SessionServices } from "./services.ts";

/** What a handler sees of its session. */
export interface FrameContext {
  readonly user: string;
  readonly device: string;
  readonly services: SessionServices;
  readonly limits: SocketLimits;
  reply(frame: ServerFrame): void;
  /**
   * Moves the socket onto a fresh token of its own user (a new expiry); UNAUTHENTICATED for a
   * token that is not valid, revoked, or another user's: the socket then keeps its current one.
   */
  renewToken(token: string): Promise<TokenClaims>;
}

type FrameOf<T extends ClientFrame["type"]> = Extract<ClientFrame, { type: T }>;
type Handler<T extends ClientFrame["type"]> = (ctx: FrameContext, frame: FrameOf<T>) => Promise<void> | void;

function conv(ctx: FrameContext, ref: string | undefined, c: Conversation): void {
  ctx.reply({ type: "conv", ref, conv: { id: c.id, kind: c.kind, members: c.members, name: c.name, owner: c.owner } });
}

const FRAME_HANDLERS: { [T in ClientFrame["type"]]: Handler<T> } = {
  ping: (ctx, f) => ctx.reply({ type: "pong", ref: f.ref }),

  token: async (ctx, f) => {
    ctx.limits.tokenFrame();
    const claims = await ctx.renewToken(f.token);
    ctx.reply({ type: "token", ref: f.ref, user: claims.user, exp: claims.exp });
  },

  "dm.open": async (ctx, f) => conv(ctx, f.ref, await ctx.services.directory.openDm(ctx.user, f.peer)),
  "group.create": async (ctx, f) => conv(ctx, f.ref, await ctx.services.directory.createGroup(ctx.user, f.name, f.members)),
  "group.add": async (ctx, f) => conv(ctx, f.ref, await ctx.services.directory.addMember(f.conv, ctx.user, f.user)),
  "group.remove": async (ctx, f) => conv(ctx, f.ref, await ctx.services.directory.removeMember(f.conv, ctx.user, f.user)),
  "group.leave": async (ctx, f) => conv(ctx, f.ref, await ctx.services.directory.removeMember(f.conv, ctx.user, ctx.user)),
  members: async (ctx, f) => conv(ctx, f.ref, await ctx.services.directory.requireMember(f.conv, ctx.user)),

  send: async (ctx, f) => {
    const { services: s } = ctx;
    if ([...f.text].length > s.edge.maxTextChars) throw new NatterError("TEXT_TOO_LARGE", `text exceeds ${s.edge.maxTextChars} characters`);
    const c = await s.directory.requireMember(f.conv, ctx.user);
    // What this message stores: its text in every member's inbox (the daily quota counts it).
    const stored = Buffer.byteLength(f.text) * c.members.length;
    await s.quota?.check(ctx.user, stored);
    // Attached (recorded as shared in this conversation) before the message exists: no recipient
    // ever sees an image it may not fetch.
    let images: ImageRef[] | undefined;
    if (f.images !== undefined && f.images.length > 0) {
      if (!s.images) throw new NatterError("BAD_FRAME", "images: this edge does not take images");
      images = await s.images.attach(ctx.user, f.conv, f.images);
    }
    const r = await s.publish({ conv: f.conv, from: ctx.user, device: ctx.device, cid: f.cid, text: f.text, images });
    if (!r.duplicate) s.quota?.add(ctx.user, stored);
    ctx.reply({ type: "ack", ref: f.ref, conv: f.conv, cid: f.cid, id: r.id, dup: r.duplicate });
  },

  history: async (ctx, f) => {
    await ctx.services.directory.requireMember(f.conv, ctx.user);
    const messages = await ctx.services.history(f.conv, { before: f.before, limit: f.limit });
    ctx.reply({ type: "history", ref: f.ref, conv: f.conv, messages });
  },

  presence: async (ctx, f) => {
    const { directory, presence } = ctx.services;
    if ((f.users === undefined) === (f.conv === undefined)) throw new NatterError("BAD_FRAME", "presence: give either users or conv");
    let ask: string[];
    if (f.conv !== undefined) {
      // Co-members of a conversation: fetched when asked, never pushed.
      const c = await directory.requireMember(f.conv, ctx.user);
      ask = c.members.filter((m) => m !== ctx.user);
    } else {
      // Contacts only; anyone else is left out of the answer (no hint whether they exist).
      const contacts = await directory.contactsAmong(ctx.user, f.users ?? []);
      ask = [...new Set(f.users)].filter((u) => contacts.has(u));
    }
    const users = presence ? await presence.lookup(ask) : [];
    ctx.reply({ type: "presence", ref: f.ref, users });
  },

  receipt: async (ctx, f) => {
    if (f.read === undefined && f.delivered === undefined) throw new NatterError("BAD_FRAME", "receipt: give read, delivered or both");
    // A receipt is a stored event fanned out to every member: it counts as a send.
    const r = await ctx.services.receipts.mark({ conv: f.conv, user: ctx.user, device: ctx.device, read: f.read, delivered: f.delivered });
    ctx.reply({ type: "receipt", ref: f.ref, conv: r.conv, id: r.id, user: r.user, delivered: r.delivered, read: r.read });
  },
  receipts: async (ctx, f) => {
    const receipts = await ctx.services.receipts.ofMembers(f.conv, ctx.user);
    ctx.reply({ type: "receipts", ref: f.ref, conv: f.conv, receipts });
  },
  convs: async (ctx, f) => {
    const convs = await ctx.services.receipts.conversations(ctx.user);
    ctx.reply({ type: "convs", ref: f.ref, convs });
  },

  typing: async (ctx, f) => {
    const undo = ctx.limits.typing(f.conv); // before the await: a second frame meanwhile is limited too
    let c: Conversation;
    try {
      c = await ctx.services.directory.requireMember(f.conv, ctx.user);
    } catch (err) {
      undo();
      throw err;
    }
    const others = c.members.filter((m) => m !== ctx.user);
    ctx.services.typing.publish(others, { conv: f.conv, user: ctx.user, ttlMs: TYPING_TTL_MS });
    ctx.reply({ type: "typing", ref: f.ref, conv: f.conv, user: ctx.user, ttlMs: TYPING_TTL_MS });
  },

  "push.register": async (ctx, f) => {
    const { push } = ctx.services;
    if (!push) throw new NatterError("PUSH_DISABLED");
    const target: PushTarget =
      f.kind === "webpush" ? { kind: "webpush", endpoint: f.endpoint, keys: f.keys } : f.kind === "webhook" ? { kind: "webhook", url: f.url } : { kind: f.kind, token: f.token };
    const r = await push.register(ctx.user, ctx.device, target);
    ctx.reply({ type: "push.registered", ref: f.ref, id: r.id, kind: r.kind, ...(r.secret !== undefined ? { secret: r.secret } : {}) });
  },
  "push.remove": async (ctx, f) => {
    const { push } = ctx.services;
    if (!push) throw new NatterError("PUSH_DISABLED");
    const removed = await push.remove(ctx.user, f.id);
    ctx.reply({ type: "push.removed", ref: f.ref, id: f.id, removed });
  },
};

/** Runs the handler of `frame`'s type. */
export function handleFrame(ctx: FrameContext, frame: ClientFrame): Promise<void> | void {
  return (FRAME_HANDLERS[frame.type] as Handler<ClientFrame["type"]>)(ctx, frame as never);
}
