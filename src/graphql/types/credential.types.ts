import { Field, ID, InputType, ObjectType, registerEnumType, GraphQLISODateTime } from "type-graphql";
import { Connection } from "./pagination.js";
import type { ServiceCredential } from "../../domain/tenancy/types.js";

export enum Role {
  ADMIN = "ADMIN",
  TENANT_ADMIN = "TENANT_ADMIN",
  GATEWAY = "GATEWAY",
  BILLING = "BILLING",
}
registerEnumType(Role, {
  name: "Role",
  description:
    "What a caller of this API may do: ADMIN everything; TENANT_ADMIN read its own tenant; GATEWAY the enforcement calls; BILLING usage and events.",
});

export enum CredentialStatus {
  ACTIVE = "ACTIVE",
  REVOKED = "REVOKED",
}
registerEnumType(CredentialStatus, { name: "CredentialStatus", description: "REVOKED credentials are refused on every replica within seconds." });

@ObjectType("ServiceCredential", { description: "A bearer credential for a gateway, billing system, tenant admin or operator." })
export class ServiceCredentialType {
  @Field(() => ID) id!: string;
  @Field(() => Role) role!: Role;
  @Field(() => ID, { nullable: true, description: "The tenant a TENANT_ADMIN (or a tenant-bound GATEWAY/BILLING) is confined to." })
  tenantId!: string | null;
  @Field(() => String) name!: string;
  @Field(() => CredentialStatus) status!: CredentialStatus;
  @Field(() => GraphQLISODateTime) createdAt!: Date;
  @Field(() => GraphQLISODateTime, { nullable: true }) revokedAt!: Date | null;
}

export function toCredentialType(c: ServiceCredential): ServiceCredentialType {
  return {
    id: c.id,
    role: c.role as Role,
    tenantId: c.tenantId,
    name: c.name,
    status: c.status as CredentialStatus,
    createdAt: c.createdAt,
    revokedAt: c.revokedAt,
  };
}

@ObjectType("ServiceCredentialWithSecret", { description: "Returned once when a credential is created." })
export class ServiceCredentialWithSecretType {
  @Field(() => ServiceCredentialType) credential!: ServiceCredentialType;
  @Field(() => String, { description: "The bearer token. Shown only now: it is stored as a hash and cannot be read again." })
  secret!: string;
}

@InputType("CreateCredentialInput")
export class CreateCredentialInput {
  @Field(() => Role) role!: Role;
  @Field(() => ID, { nullable: true, description: "Required for TENANT_ADMIN; optional for GATEWAY and BILLING; not allowed for ADMIN." })
  tenantId?: string | null;
  @Field(() => String, { description: "1 to 200 characters." }) name!: string;
}

export const ServiceCredentialConnection = Connection("ServiceCredentialConnection", ServiceCredentialType);
export type ServiceCredentialConnection = InstanceType<typeof ServiceCredentialConnection>;
