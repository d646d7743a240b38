"""Field catalogue of the Pipeliner entities the emulator serves, as the vendor's spec lists them.

Copied from `pipeliner-contacts-openapi.json` (see `tests/contract/specs/`): one entry per
`components.schemas` object, every property in the spec's order as `name:kind`, with `!` for
`readOnly` and `*` for `required`. Kinds: `bool`, `int`, `str`, `uuid`, `datetime`, `uri` (a
relation returned as a URI unless expanded), `uri[]`, `uuid[]`, `str[]`, `rel` / `rel[]` (an input
relation object `{"id": <uri>}`), `object`, `binary`. `tests/contract/test_pipeliner_contract.py`
checks this table against the spec file, so the emulator cannot drift from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

_ENUM_GROUPS = {
    (1, 2, 3, 4, 5): """
        account_class
    """,
    (0, 1, 2, 3): """
        share_mode gender relationship access_entity_pipeline
    """,
    (0, 1): """
        type
    """,
    (1, 2): """
        role access_entity_account_types access_entity_contact_types access_entity_lead_types
        access_entity_quote_types
    """,
    (0, 1, 2): """
        access_calling_company_phone access_company_emails
        access_entity_email_content_share_mode access_whats_app_company_phone
    """,
    (0, 1, 2, 3, 4): """
        access_entity_account access_entity_appointment access_entity_contact
        access_entity_lead access_entity_oppty access_entity_project access_entity_quote
        access_entity_task
    """,
    (1, 2, 3, 4, 5, 6): """
        access_entity_account_direction access_entity_appointment_direction
        access_entity_contact_direction access_entity_lead_direction
        access_entity_oppty_direction access_entity_project_direction
        access_entity_quote_direction access_entity_task_direction
    """,
    (0, 1, 4): """
        access_entity_better_navigator access_entity_dashboard access_entity_email_template
        access_entity_forecast access_entity_form_view access_entity_profile
        access_entity_report access_entity_target
    """,
    (1, 2, 3): """
        access_entity_email_sequence access_entity_process
    """,
}
#: Integer enums of the spec, by property name (the same values wherever the name occurs).
ENUMS: dict[str, frozenset[int]] = {
    name: frozenset(values) for values, names in _ENUM_GROUPS.items() for name in names.split()
}

#: Filter operators the spec lists for `filter-op[...]`.
FILTER_OPERATORS = (
    "eq",
    "ieq",
    "not-eq",
    "not-ieq",
    "contains",
    "starts",
    "ends",
    "icontains",
    "istarts",
    "iends",
    "null",
    "not-null",
    "empty",
    "not-empty",
    "gt",
    "gte",
    "lt",
    "lte",
    "between",
)

_CATALOGUE = {
    "Account": """
        is_delete_protected:bool!* id:uuid!* is_deleted:bool! modified:datetime! created:datetime
        account_type:uri* currency_exchange_rates_list:uri customer_type:uri industry:uri
        owner:uri* parent_account:uri parent_account_relation_type:uri picture:uri unit:uri*
        account_class:int account_type_id:uuid address:str city:str comments:str country:str
        currency_exchange_rates_list_id:uuid customer_type_id:uuid email1:str email2:str
        email3:str email4:str email5:str health_category:uuid health_status:int home_page:str
        industry_id:uuid is_archived:bool last_ai_account_hierarchy_applied:datetime
        last_ai_org_chart_applied:datetime name:str* owner_id:uuid* parent_account_id:uuid
        parent_account_relation_type_id:uuid phone1:str phone2:str phone3:str phone4:str
        phone5:str picture_id:uuid quick_parent_account_name:str share_mode:int state_province:str
        unit_id:uuid zip_code:str revision:int formatted_name:str* social_media:uri
        sharing_units:uri[] sharing_clients:uri[] documents:uri[] is_favorite:bool*
        is_unsubscribed:bool tags:uri[] static_profiles:uri[] health:object
        modified_by_user:datetime
    """,
    "Client": """
        is_delete_protected:bool!* id:uuid!* is_deleted:bool! modified:datetime! created:datetime!
        default_unit:uri* master_right:uri* default_unit_id:uuid* email:str* first_name:str!
        last_active:datetime! last_name:str! master_right_id:uuid* middle_name:str! phone:str!
        picture_url:str! position:str region:str! timezone:str! type:int revision:int
        default_idp:int user_profile_id:int unit_membership:uri[]* appointment_favorite:uri[]
        task_favorite:uri[] account_favorite:uri[] contact_favorite:uri[] profile_favorite:uri[]
        report_favorite:uri[] lead_favorite:uri[] opportunity_favorite:uri[] timezone_name:str
        name:str formatted_name:str* unit_manager_ids:uuid[]* unit_member_ids:uuid[]*
        user_recalculation_state:str
    """,
    "Contact": """
        is_delete_protected:bool!* id:uuid!* is_deleted:bool! modified:datetime! created:datetime
        contact_type:uri* currency_exchange_rates_list:uri owner:uri* picture:uri unit:uri*
        address:str city:str comments:str contact_type_id:uuid country:str
        currency_exchange_rates_list_id:uuid email1:str email2:str email3:str email4:str
        email5:str first_name:str gender:int is_archived:bool last_name:str middle_name:str
        owner_id:uuid* phone1:str phone2:str phone3:str phone4:str phone5:str picture_id:uuid
        position:str quick_account_name:str share_mode:int state_province:str title:str
        unit_id:uuid zip_code:str revision:int formatted_name:str* social_media:uri
        primary_account:uri account_relations:uri[] sharing_units:uri[] sharing_clients:uri[]
        documents:uri[] exchange_entity_id:str gapi_entity_id:str o365_entity_id:str
        is_favorite:bool* primary_account_account_roles:uri[] primary_account_position:str
        account_position:str is_unsubscribed:bool tags:uri[] static_profiles:uri[]
        primary_account_relationship:str modified_by_user:datetime
    """,
    "ContactAccountRelation": """
        is_delete_protected:bool!* id:uuid!* is_deleted:bool! modified:datetime! created:datetime!
        account:uri* contact:uri* account_id:uuid* comment:str contact_id:uuid* is_assistant:bool
        is_primary:bool* is_sibling:bool position:str relationship:int revision:int
        account_roles:uri[]
    """,
    "ContactSharingClientRelation": """
        is_delete_protected:bool!* id:uuid!* is_deleted:bool! modified:datetime! created:datetime!
        client:uri* contact:uri* client_id:uuid* contact_id:uuid* role:int revision:int
    """,
    "ContactSharingSalesUnitRelation": """
        is_delete_protected:bool!* id:uuid!* is_deleted:bool! modified:datetime! created:datetime!
        contact:uri* unit:uri* contact_id:uuid* role:int unit_id:uuid* revision:int
    """,
    "MasterRight": """
        is_delete_protected:bool!* id:uuid!* is_deleted:bool! modified:datetime! created:datetime!
        access_account_relation_types:bool access_accounts:bool access_ai_automatizer:bool
        access_ai_online_forms:bool access_ai_record_detail:bool access_ai_record_enrichment:bool
        access_ai_relationship_charts:bool access_ai_reports:bool access_ai_smart_field:bool
        access_appointment_scheduler:bool access_appointment_scheduler_management:bool
        access_approval_processes:bool access_approval_processes_management:bool
        access_approvals:bool access_archive:bool access_audit:bool access_audit_log:bool
        access_bulk_update:bool access_calling:bool access_calling_company_phone:int
        access_calling_purchase_phone:bool access_company_emails:int access_contacts:bool
        access_document_management:bool access_document_management_company:bool
        access_document_management_record:bool access_duplicate_checker:bool
        access_email_notification_enforcement:bool access_email_notification_settings:object
        access_entity_account:int access_entity_account_copy:bool
        access_entity_account_delete:bool access_entity_account_direction:int
        access_entity_account_private:bool access_entity_account_tag_create:bool
        access_entity_account_types:int access_entity_appointment:int
        access_entity_appointment_delete:bool access_entity_appointment_direction:int
        access_entity_appointment_tag_create:bool access_entity_better_navigator:int
        access_entity_better_navigator_delete_not_owned:bool
        access_entity_better_navigator_delete_owned:bool
        access_entity_better_navigator_sharing_custom:bool
        access_entity_better_navigator_sharing_public:bool access_entity_contact:int
        access_entity_contact_copy:bool access_entity_contact_delete:bool
        access_entity_contact_direction:int access_entity_contact_private:bool
        access_entity_contact_tag_create:bool access_entity_contact_types:int
        access_entity_dashboard:int access_entity_dashboard_delete_not_owned:bool
        access_entity_dashboard_delete_owned:bool access_entity_dashboard_sharing_custom:bool
        access_entity_dashboard_sharing_public:bool access_entity_email_content_share_mode:int
        access_entity_email_delete_not_owned:bool access_entity_email_sequence:int
        access_entity_email_template:int access_entity_email_template_create_delete_folder:bool
        access_entity_email_template_delete_not_owned:bool
        access_entity_email_template_delete_owned:bool
        access_entity_email_template_sharing_custom:bool
        access_entity_email_template_sharing_public:bool access_entity_forecast:int
        access_entity_forecast_delete_not_owned:bool access_entity_forecast_delete_owned:bool
        access_entity_forecast_edit_not_owned:bool access_entity_forecast_sharing_custom:bool
        access_entity_forecast_sharing_public:bool access_entity_form_view:int
        access_entity_form_view_delete_not_owned:bool access_entity_form_view_delete_owned:bool
        access_entity_form_view_sharing_custom:bool access_entity_form_view_sharing_public:bool
        access_entity_lead:int access_entity_lead_copy:bool access_entity_lead_delete:bool
        access_entity_lead_direction:int access_entity_lead_private:bool
        access_entity_lead_tag_create:bool access_entity_lead_types:int
        access_entity_message_tag_create:bool access_entity_oppty:int
        access_entity_oppty_copy:bool access_entity_oppty_delete:bool
        access_entity_oppty_direction:int access_entity_oppty_private:bool
        access_entity_oppty_tag_create:bool access_entity_pipeline:int access_entity_process:int
        access_entity_profile:int access_entity_profile_default_screen_profiles:object
        access_entity_profile_delete_not_owned:bool access_entity_profile_delete_owned:bool
        access_entity_profile_sharing_custom:bool access_entity_profile_sharing_public:bool
        access_entity_project:int access_entity_project_copy:bool
        access_entity_project_delete:bool access_entity_project_direction:int
        access_entity_project_private:bool access_entity_project_tag_create:bool
        access_entity_quote:int access_entity_quote_copy:bool access_entity_quote_delete:bool
        access_entity_quote_direction:int access_entity_quote_tag_create:bool
        access_entity_quote_types:int access_entity_report:int
        access_entity_report_create_delete_folder:bool access_entity_report_delete_not_owned:bool
        access_entity_report_delete_owned:bool access_entity_report_private:bool
        access_entity_report_schedule_create:bool access_entity_report_schedule_management:bool
        access_entity_report_sharing_custom:bool access_entity_report_sharing_public:bool
        access_entity_target:int access_entity_target_delete_not_owned:bool
        access_entity_target_delete_owned:bool access_entity_task:int
        access_entity_task_delete:bool access_entity_task_direction:int
        access_entity_task_tag_create:bool access_entity_task_unassigned:bool access_export:bool
        access_feeds:bool access_foreign_currencies:bool access_form_and_fields:bool
        access_global_settings:bool access_home_screen:bool access_import:bool
        access_insights:bool access_leads:bool access_online_forms:bool
        access_online_forms_management:bool access_opportunity:bool
        access_pipeline_configuration:bool access_print:bool access_products_services:bool
        access_projects:bool access_quotes:bool access_sales_roles:bool access_security:bool
        access_units:bool access_user_and_roles:bool access_whats_app_company_phone:int name:str*
        revision:int allowed_pipelines:uri[] allowed_lead_types:uri[] allowed_quote_types:uri[]
        allowed_account_types:uri[] allowed_contact_types:uri[] allowed_company_emails:uri[]
        allowed_company_phones:uri[] custom_entities:binary
    """,
    "batchContactInput": """
        created:datetime picture:rel address:str city:str comments:str contact_type_id:uuid
        country:str currency_exchange_rates_list_id:uuid email1:str email2:str email3:str
        email4:str email5:str first_name:str gender:int is_archived:bool last_name:str
        middle_name:str owner_id:uuid phone1:str phone2:str phone3:str phone4:str phone5:str
        picture_id:uuid position:str quick_account_name:str share_mode:int state_province:str
        title:str unit_id:uuid zip_code:str revision:int social_media:rel account_relations:rel[]
        sharing_units:rel[] sharing_clients:rel[] documents:rel[] exchange_entity_id:str
        gapi_entity_id:str o365_entity_id:str primary_account_account_roles:rel[]
        account_position:str is_unsubscribed:bool tags:rel[] static_profiles:rel[]
        primary_account_relationship:str id:uuid
    """,
    "createAccountInput": """
        modified:datetime! created:datetime picture:rel account_class:int account_type_id:uuid
        address:str city:str comments:str country:str currency_exchange_rates_list_id:uuid
        customer_type_id:uuid email1:str email2:str email3:str email4:str email5:str home_page:str
        industry_id:uuid is_archived:bool last_ai_account_hierarchy_applied:datetime
        last_ai_org_chart_applied:datetime name:str* owner_id:uuid* parent_account_id:uuid
        parent_account_relation_type_id:uuid phone1:str phone2:str phone3:str phone4:str
        phone5:str picture_id:uuid quick_parent_account_name:str share_mode:int state_province:str
        unit_id:uuid zip_code:str revision:int social_media:rel sharing_units:rel[]
        sharing_clients:rel[] documents:rel[] is_unsubscribed:bool tags:rel[]
        static_profiles:rel[]
    """,
    "createClientInput": """
        modified:datetime! created:datetime! default_unit_id:uuid* email:str* first_name:str!
        last_active:datetime! last_name:str! master_right_id:uuid* middle_name:str! phone:str!
        position:str region:str! timezone:str! type:int revision:int unit_membership:rel[]*
        appointment_favorite:rel[] task_favorite:rel[] account_favorite:rel[]
        contact_favorite:rel[] profile_favorite:rel[] report_favorite:rel[] lead_favorite:rel[]
        opportunity_favorite:rel[]
    """,
    "createContactAccountRelationInput": """
        modified:datetime! created:datetime! account_id:uuid* comment:str contact_id:uuid*
        is_assistant:bool is_primary:bool* is_sibling:bool position:str relationship:int
        revision:int account_roles:rel[]
    """,
    "createContactInput": """
        modified:datetime! created:datetime picture:rel address:str city:str comments:str
        contact_type_id:uuid country:str currency_exchange_rates_list_id:uuid email1:str
        email2:str email3:str email4:str email5:str first_name:str gender:int is_archived:bool
        last_name:str middle_name:str owner_id:uuid* phone1:str phone2:str phone3:str phone4:str
        phone5:str picture_id:uuid position:str quick_account_name:str share_mode:int
        state_province:str title:str unit_id:uuid zip_code:str revision:int social_media:rel
        account_relations:rel[] sharing_units:rel[] sharing_clients:rel[] documents:rel[]
        primary_account_account_roles:rel[] account_position:str is_unsubscribed:bool tags:rel[]
        static_profiles:rel[] primary_account_relationship:str
    """,
    "createContactSharingClientRelationInput": """
        modified:datetime! created:datetime! client_id:uuid* contact_id:uuid* role:int
        revision:int
    """,
    "createContactSharingSalesUnitRelationInput": """
        modified:datetime! created:datetime! contact_id:uuid* role:int unit_id:uuid* revision:int
    """,
    "updateClientInput": """
        default_unit_id:uuid master_right_id:uuid position:str type:int revision:int
        unit_membership:rel[] appointment_favorite:rel[] task_favorite:rel[]
        account_favorite:rel[] contact_favorite:rel[] profile_favorite:rel[] report_favorite:rel[]
        lead_favorite:rel[] opportunity_favorite:rel[]
    """,
    "updateContactInput": """
        created:datetime picture:rel address:str city:str comments:str contact_type_id:uuid
        country:str currency_exchange_rates_list_id:uuid email1:str email2:str email3:str
        email4:str email5:str first_name:str gender:int is_archived:bool last_name:str
        middle_name:str owner_id:uuid phone1:str phone2:str phone3:str phone4:str phone5:str
        picture_id:uuid position:str quick_account_name:str share_mode:int state_province:str
        title:str unit_id:uuid zip_code:str revision:int social_media:rel account_relations:rel[]
        sharing_units:rel[] sharing_clients:rel[] documents:rel[] exchange_entity_id:str
        gapi_entity_id:str o365_entity_id:str primary_account_account_roles:rel[]
        account_position:str is_unsubscribed:bool tags:rel[] static_profiles:rel[]
        primary_account_relationship:str
    """,
    "updateContactSharingClientRelationInput": """
        client_id:uuid contact_id:uuid role:int revision:int
    """,
}


@dataclass(frozen=True)
class Schema:
    """One schema of the catalogue: ordered `kinds`, `read_only` and `required` names."""

    name: str
    kinds: dict[str, str]
    read_only: frozenset[str] = field(default_factory=frozenset)
    required: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.kinds)


@cache
def schema(name: str) -> Schema:
    """The catalogue entry of `components.schemas[name]`."""
    kinds: dict[str, str] = {}
    read_only: set[str] = set()
    required: list[str] = []
    for token in _CATALOGUE[name].split():
        prop, _, kind = token.partition(":")
        if kind.endswith("*"):
            kind = kind[:-1]
            required.append(prop)
        if kind.endswith("!"):
            kind = kind[:-1]
            read_only.add(prop)
        kinds[prop] = kind
    return Schema(name, kinds, frozenset(read_only), tuple(required))


def schema_names() -> list[str]:
    return sorted(_CATALOGUE)


#: Kinds that can be filtered and ordered by (scalars).
SCALAR_KINDS = frozenset({"bool", "int", "str", "uuid", "datetime"})
