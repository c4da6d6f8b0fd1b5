// Which conversations an image was shared in: the authorization index for fetching images. A user
// may fetch an image when they uploaded it or are a member of a conversation it was sent to.
// Written by the edge when a message attaches the image (before the message is published, so a
// recipient never sees a message whose image it may not fetch); read per fetch by image id, one
// partition, whatever the number of images. Implemented by both message stores (one connection).
import type { ImageRef } from "../streams/index.ts";

/** Conversations one image may be shared in (an uploader forwarding it further uploads it again). */
export const MAX_IMAGE_SHARES = 100;

export interface SharedImage {
  /** The uploader: the only user who may attach the image to messages. */
  owner: string;
  image: ImageRef;
  /** Conversations the image was sent to (at most MAX_IMAGE_SHARES), in no particular order. */
  convs: string[];
}

export interface ImageIndex {
  /** Records that `image`, uploaded by `owner`, was sent to `conv`. Recording it again changes nothing. */
  shareImage(owner: string, image: ImageRef, conv: string): Promise<void>;
  /** The image's uploader, reference and conversations, or null when it was never shared. */
  sharedImage(id: string): Promise<SharedImage | null>;
}
