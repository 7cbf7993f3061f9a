/** An error the user can meet and fix: printed as one line, without a stack trace. */
export class UserError extends Error {
  override name = "UserError";
}

/** A shape, dtype or limit that an op refuses before anything is dispatched. */
export class ShapeError extends UserError {
  override name = "ShapeError";
}
