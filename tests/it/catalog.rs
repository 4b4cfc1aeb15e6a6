//! The catalog: classification invariants and who sees what.

use bth_gateway::domain::classification::Level;
use bth_gateway::pb;
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn unclassified_or_inconsistent_fields_are_refused_naming_the_field() {
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    type Change = Box<dyn Fn(&mut pb::RegisterDatasetRequest)>;
    let cases: Vec<(Change, &str)> = vec![
        (Box::new(|r| r.fields[1].level = pb::Level::Unspecified as i32), "fields[1].level"),
        (Box::new(|r| r.fields[2].level = pb::Level::G2 as i32), "contact"),
        (Box::new(|r| r.fields[0].level = pb::Level::X as i32), "level X"),
        (Box::new(|r| r.fields[0].stat_micro = true), "stat_micro"),
        (Box::new(|r| r.fields[5].default_mask = Some(mask(pb::MaskKind::Partial))), "PARTIAL"),
        (Box::new(|r| r.fields[1].name = "District".into()), "fields[1].name"),
        (Box::new(|r| r.fields[1].name = "enterprise".into()), "twice"),
        (Box::new(|r| r.person_key_field = "nobody".into()), "person_key_field"),
        (Box::new(|r| r.id = "Bad Id".into()), "id"),
        (Box::new(|r| r.title = "survey\0".into()), "title: contains a control character"),
        (Box::new(|r| r.fields[3].description = "phone\u{7}".into()), "field description: contains a control"),
    ];
    for (change, needle) in cases {
        let mut req = survey("survey");
        change(&mut req);
        let err = owner.catalog.register_dataset(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{needle}: {err:?}");
        assert!(err.message().contains(needle), "{needle}: {}", err.message());
    }
    assert_eq!(t.count("SELECT COUNT(*) FROM datasets").await, 0, "nothing stored");
    owner.catalog.register_dataset(survey("survey")).await.unwrap();
    let err = owner.catalog.register_dataset(survey("survey")).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
}

#[tokio::test]
async fn only_publishers_register_datasets() {
    let t = TestGateway::start().await;
    let mut consumer = t.consumer("tj-commerce", Level::G2).await;
    let err = consumer.catalog.register_dataset(survey("survey")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn anyone_sees_the_catalog_entry_and_only_the_owner_sees_everything() {
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(survey("survey")).await.unwrap();
    publish(&mut owner, "survey", "v1", vec![survey_rows(2, 0)]).await.unwrap();
    let mut other = t.consumer("tj-commerce", Level::G2).await;

    let public = other.catalog.get_dataset(pb::GetDatasetRequest { id: "survey".into() }).await.unwrap().into_inner();
    assert_eq!(public.fields.len(), 11);
    assert_eq!(public.fields[2].level, pb::Level::G3 as i32);
    assert_eq!(public.fields[2].pi, 0, "flags are the owner's");
    assert!(public.fields[2].default_mask.is_none());
    assert!(public.versions.is_empty());
    assert_eq!(public.latest_version, 1);

    let full = owner.catalog.get_dataset(pb::GetDatasetRequest { id: "survey".into() }).await.unwrap().into_inner();
    assert_eq!(full.fields[2].pi, pb::Pi::Pi as i32);
    assert_eq!(full.versions.len(), 1);
    assert_eq!(full.versions[0].rows, 2);
    assert_eq!(full.person_key_field, "contact");

    let err = other.catalog.get_dataset(pb::GetDatasetRequest { id: "missing".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn the_catalog_lists_in_pages() {
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    for i in 0..5 {
        owner.catalog.register_dataset(survey(&format!("ds-{i}"))).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = owner
            .catalog
            .list_datasets(pb::ListDatasetsRequest { page_size: 2, page_token: token.clone() })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.datasets.into_iter().map(|d| d.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ["ds-0", "ds-1", "ds-2", "ds-3", "ds-4"]);
    let err = owner
        .catalog
        .list_datasets(pb::ListDatasetsRequest { page_size: 501, page_token: String::new() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}
