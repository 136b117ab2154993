import type { AuthChecker } from "type-graphql";
import type { GraphQLContext } from "./context.js";
import type { Role } from "../domain/tenancy/types.js";
import { forbidden, unauthenticated } from "../lib/errors.js";

/**
 * Role gate for `@Authorized(...roles)`. Tenant scoping (a TENANT_ADMIN sees only its tenant)
 * is enforced in the services, where the object's tenant is known.
 */
export const authChecker: AuthChecker<GraphQLContext, Role> = ({ context }, roles) => {
  const actor = context.actor;
  if (!actor) throw unauthenticated();
  if (roles.length === 0 || roles.includes(actor.role)) return true;
  throw forbidden(`role ${actor.role} may not perform this operation`);
};
