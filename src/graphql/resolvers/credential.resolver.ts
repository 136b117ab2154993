import { Arg, Args, Authorized, Ctx, ID, Mutation, Query, Resolver } from "type-graphql";
import type { GraphQLContext } from "../context.js";
import { PageArgs, pageRequest, toConnection, toPage } from "../types/pagination.js";
import {
  CreateCredentialInput,
  ServiceCredentialConnection,
  ServiceCredentialType,
  ServiceCredentialWithSecretType,
  toCredentialType,
} from "../types/credential.types.js";

/** Service credentials: ADMIN only, for every operation. */
@Resolver()
export class CredentialResolver {
  @Authorized("ADMIN")
  @Mutation(() => ServiceCredentialWithSecretType, { description: "Creates a credential. The secret is in this response only." })
  async createCredential(
    @Arg("input", () => CreateCredentialInput) input: CreateCredentialInput,
    @Ctx() ctx: GraphQLContext,
  ): Promise<ServiceCredentialWithSecretType> {
    const { credential, secret } = await ctx.services.credentials.create(ctx.actor!, {
      role: input.role,
      tenantId: input.tenantId ?? null,
      name: input.name,
    });
    return { credential: toCredentialType(credential), secret };
  }

  @Authorized("ADMIN")
  @Mutation(() => ServiceCredentialType, { description: "Revokes a credential on every replica within seconds. Revoking twice is harmless." })
  async revokeCredential(@Arg("id", () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<ServiceCredentialType> {
    return toCredentialType(await ctx.services.credentials.revoke(ctx.actor!, id));
  }

  @Authorized("ADMIN")
  @Query(() => ServiceCredentialType)
  async credential(@Arg("id", () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<ServiceCredentialType> {
    return toCredentialType(await ctx.services.credentials.get(ctx.actor!, id));
  }

  @Authorized("ADMIN")
  @Query(() => ServiceCredentialConnection, { description: "Every service credential, ordered by id, a page at a time." })
  async credentials(@Args(() => PageArgs) args: PageArgs, @Ctx() ctx: GraphQLContext): Promise<ServiceCredentialConnection> {
    const page = pageRequest(args);
    const items = await ctx.services.credentials.list(ctx.actor!, page);
    return toConnection(toPage(items.map(toCredentialType), page.first, (c) => c.id));
  }
}
