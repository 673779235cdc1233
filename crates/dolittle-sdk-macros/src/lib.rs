//! Derive macros of the Dolittle Rust SDK; use them through `dolittle-sdk`, which re-exports
//! them next to the traits they implement.
//!
//! * `#[derive(EventType)]` with `#[event_type(id = "<guid>", generation = 1)]` on a serde type
//!   implements `dolittle_sdk::EventType` (and `dolittle_sdk::Events`, as a set of one type).
//! * `#[derive(Events)]` on an enum whose variants each hold one event type implements
//!   `dolittle_sdk::Events` and `From<Variant type>` for the enum.
//!
//! Every mistake becomes a `compile_error!` pointing at the offending tokens.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::quote;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, LitInt, LitStr, parse_macro_input};

/// Implements `dolittle_sdk::EventType` for a serde type, from
/// `#[event_type(id = "<guid>", generation = <u32>)]` (the generation defaults to 1).
#[proc_macro_derive(EventType, attributes(event_type))]
pub fn derive_event_type(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand_event_type(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Implements `dolittle_sdk::Events` for an enum of event types: every variant holds exactly
/// one value whose type implements `dolittle_sdk::EventType`.
#[proc_macro_derive(Events)]
pub fn derive_events(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand_events(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// What `#[event_type(..)]` says.
struct EventTypeArguments {
    id: uuid::Uuid,
    generation: u32,
}

fn parse_event_type_arguments(input: &DeriveInput) -> syn::Result<EventTypeArguments> {
    let mut attributes = input
        .attrs
        .iter()
        .filter(|attribute| attribute.path().is_ident("event_type"));
    let Some(attribute) = attributes.next() else {
        return Err(syn::Error::new(
            input.ident.span(),
            "missing #[event_type(id = \"<guid>\")]: an event type needs an id",
        ));
    };
    if let Some(second) = attributes.next() {
        return Err(syn::Error::new_spanned(
            second,
            "only one #[event_type(..)] attribute is allowed",
        ));
    }
    let mut id: Option<uuid::Uuid> = None;
    let mut generation: Option<u32> = None;
    attribute.parse_nested_meta(|meta| {
        if meta.path.is_ident("id") {
            if id.is_some() {
                return Err(meta.error("duplicate `id`"));
            }
            let text: LitStr = meta.value()?.parse()?;
            let parsed = uuid::Uuid::parse_str(&text.value()).map_err(|error| {
                syn::Error::new(text.span(), format!("`id` is not a GUID: {error}"))
            })?;
            if parsed.is_nil() {
                return Err(syn::Error::new(
                    text.span(),
                    "`id` must not be the empty GUID",
                ));
            }
            id = Some(parsed);
            Ok(())
        } else if meta.path.is_ident("generation") {
            if generation.is_some() {
                return Err(meta.error("duplicate `generation`"));
            }
            let number: LitInt = meta.value()?.parse()?;
            let parsed = number.base10_parse::<u32>().map_err(|_| {
                syn::Error::new(
                    number.span(),
                    "`generation` must be a number from 0 to 4294967295",
                )
            })?;
            generation = Some(parsed);
            Ok(())
        } else {
            Err(meta.error("unknown key: expected `id` or `generation`"))
        }
    })?;
    let Some(id) = id else {
        return Err(syn::Error::new_spanned(
            attribute,
            "missing `id = \"<guid>\"` in #[event_type(..)]",
        ));
    };
    Ok(EventTypeArguments {
        id,
        generation: generation.unwrap_or(1),
    })
}

fn expand_event_type(input: &DeriveInput) -> syn::Result<TokenStream2> {
    if let Data::Union(union) = &input.data {
        return Err(syn::Error::new(
            union.union_token.span(),
            "an event type must be a struct or an enum, not a union",
        ));
    }
    let arguments = parse_event_type_arguments(input)?;
    let name = &input.ident;
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    let id = arguments.id.as_u128();
    let id = syn::LitInt::new(&format!("0x{id:032x}u128"), Span::call_site());
    let generation = arguments.generation;
    Ok(quote! {
        impl #impl_generics ::dolittle_sdk::EventType for #name #type_generics #where_clause {
            const EVENT_TYPE: ::dolittle_sdk::types::EventType = ::dolittle_sdk::types::EventType {
                id: ::dolittle_sdk::types::EventTypeId(::dolittle_sdk::types::Uuid::from_u128(#id)),
                generation: #generation,
            };
        }

        impl #impl_generics ::dolittle_sdk::Events for #name #type_generics #where_clause {
            fn event_types() -> ::std::vec::Vec<::dolittle_sdk::types::EventType> {
                ::std::vec![<Self as ::dolittle_sdk::EventType>::EVENT_TYPE]
            }

            fn event_type(&self) -> ::dolittle_sdk::types::EventType {
                <Self as ::dolittle_sdk::EventType>::EVENT_TYPE
            }

            fn to_content(&self) -> ::std::result::Result<::std::string::String, ::dolittle_sdk::serde_json::Error> {
                ::dolittle_sdk::serde_json::to_string(self)
            }

            fn from_content(
                event_type: ::dolittle_sdk::types::EventType,
                content: &str,
            ) -> ::std::option::Option<::std::result::Result<Self, ::dolittle_sdk::serde_json::Error>> {
                if event_type.id == <Self as ::dolittle_sdk::EventType>::EVENT_TYPE.id {
                    ::std::option::Option::Some(::dolittle_sdk::serde_json::from_str(content))
                } else {
                    ::std::option::Option::None
                }
            }
        }
    })
}

fn expand_events(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let Data::Enum(data) = &input.data else {
        return Err(syn::Error::new(
            input.ident.span(),
            "#[derive(Events)] needs an enum whose variants each hold one event type",
        ));
    };
    if data.variants.is_empty() {
        return Err(syn::Error::new(
            input.ident.span(),
            "#[derive(Events)] needs at least one variant",
        ));
    }
    let name = &input.ident;
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    let mut variants = Vec::new();
    let mut types = Vec::new();
    for variant in &data.variants {
        let Fields::Unnamed(fields) = &variant.fields else {
            return Err(syn::Error::new(
                variant.span(),
                "each variant must hold exactly one event type, like `DishPrepared(DishPrepared)`",
            ));
        };
        if fields.unnamed.len() != 1 {
            return Err(syn::Error::new(
                fields.span(),
                "each variant must hold exactly one event type, like `DishPrepared(DishPrepared)`",
            ));
        }
        variants.push(&variant.ident);
        types.push(&fields.unnamed[0].ty);
    }
    Ok(quote! {
        impl #impl_generics ::dolittle_sdk::Events for #name #type_generics #where_clause {
            fn event_types() -> ::std::vec::Vec<::dolittle_sdk::types::EventType> {
                ::std::vec![#(<#types as ::dolittle_sdk::EventType>::EVENT_TYPE),*]
            }

            fn event_type(&self) -> ::dolittle_sdk::types::EventType {
                match self {
                    #(Self::#variants(_) => <#types as ::dolittle_sdk::EventType>::EVENT_TYPE,)*
                }
            }

            fn to_content(&self) -> ::std::result::Result<::std::string::String, ::dolittle_sdk::serde_json::Error> {
                match self {
                    #(Self::#variants(event) => ::dolittle_sdk::serde_json::to_string(event),)*
                }
            }

            fn from_content(
                event_type: ::dolittle_sdk::types::EventType,
                content: &str,
            ) -> ::std::option::Option<::std::result::Result<Self, ::dolittle_sdk::serde_json::Error>> {
                #(
                    if event_type.id == <#types as ::dolittle_sdk::EventType>::EVENT_TYPE.id {
                        return ::std::option::Option::Some(
                            ::dolittle_sdk::serde_json::from_str::<#types>(content).map(Self::#variants),
                        );
                    }
                )*
                ::std::option::Option::None
            }
        }

        #(
            impl #impl_generics ::std::convert::From<#types> for #name #type_generics #where_clause {
                fn from(event: #types) -> Self {
                    Self::#variants(event)
                }
            }
        )*
    })
}
