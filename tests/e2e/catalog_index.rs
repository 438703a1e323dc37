//! The per-source index (`index/<source>.json`): a cache of the manifests that makes picking
//! among many backups cheap, and that is never trusted over the manifests themselves.

use crate::support::*;

fn setup() -> (tempfile::TempDir, Workspace) {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("a.txt"), "one\n").unwrap();
    let ws = Workspace::new();
    ws.write_config(
        &ws.fs_storage_toml("local"),
        &format!(
            "[[source]]\nname = \"app\"\ntype = \"files\"\npaths = [\"{}\"]\n",
            src.path().display()
        ),
    );
    (src, ws)
}

fn index(ws: &Workspace) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(ws.fs_root("local").join("index/app.json")).unwrap()).unwrap()
}

fn index_ids(ws: &Workspace) -> Vec<String> {
    let mut v: Vec<String> = index(ws)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["manifest"]["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn listed_ids(ws: &Workspace) -> Vec<String> {
    let mut v: Vec<String> = ws
        .list_json()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn the_index_is_a_cache_and_the_manifests_stay_the_truth() {
    let (_src, ws) = setup();
    for _ in 0..3 {
        ws.ok(&["backup"]);
    }
    // Written by each backup, after its manifest.
    let ids = listed_ids(&ws);
    assert_eq!(ids.len(), 3);
    assert_eq!(index_ids(&ws), ids);
    assert!(
        index(&ws)["entries"][0]["manifest"].get("private").is_none(),
        "private facts stay out of the index"
    );

    // Lost: listing reads the manifests; the next backup writes it again.
    std::fs::remove_file(ws.fs_root("local").join("index/app.json")).unwrap();
    assert_eq!(listed_ids(&ws), ids);
    ws.ok(&["backup"]);
    let ids = listed_ids(&ws);
    assert_eq!(ids.len(), 4);
    assert_eq!(index_ids(&ws), ids);

    // An entry whose manifest is gone is ignored; a manifest the index lacks is read.
    let mut ix = index(&ws);
    let entries = ix["entries"].as_array_mut().unwrap();
    let mut phantom = entries[0].clone();
    phantom["manifest"]["id"] = "20200101T000000Z-00000000".into();
    entries.push(phantom);
    entries.remove(1);
    std::fs::write(
        ws.fs_root("local").join("index/app.json"),
        serde_json::to_vec(&ix).unwrap(),
    )
    .unwrap();
    assert_eq!(listed_ids(&ws), ids);

    // A forged entry (same size as the manifest, altered hash): list shows the cache, but a
    // restore acts on the manifest itself and succeeds.
    let newest = ws.list_json()[0]["id"].as_str().unwrap().to_string();
    let mut ix = index(&ws);
    for e in ix["entries"].as_array_mut().unwrap() {
        if e["manifest"]["id"] == newest.as_str() {
            let h = e["manifest"]["plain"]["sha256"].as_str().unwrap().to_string();
            let forged: String = h.chars().rev().collect();
            e["manifest"]["plain"]["sha256"] = forged.into();
        }
    }
    std::fs::write(
        ws.fs_root("local").join("index/app.json"),
        serde_json::to_vec(&ix).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    ws.restore_ok(dir.path());

    // A manifest damaged after it was indexed (another size) is read, and named.
    let mp = ws.fs_root("local").join(format!("manifests/app/{}.json", ids[0]));
    let text = std::fs::read(&mp).unwrap();
    std::fs::write(&mp, &text[..text.len() / 2]).unwrap();
    let (code, out, err) = ws.run(&["list"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains(&format!("manifests/app/{}.json", ids[0])), "{err}");
    std::fs::write(&mp, &text).unwrap();

    // Prune rewrites it after deleting.
    let cfg = ws
        .config_text()
        .replace("type = \"files\"", "type = \"files\"\nretention = { keep_last = 2 }");
    ws.set_config(&cfg);
    ws.ok(&["prune"]);
    let kept = listed_ids(&ws);
    assert_eq!(kept.len(), 2);
    assert_eq!(index_ids(&ws), kept);
}

#[test]
fn prune_never_deletes_objects_a_manifest_names_that_belong_to_another_backup() {
    let (_src, ws) = setup();
    ws.ok(&["backup"]);
    ws.ok(&["backup"]);
    // Newest first.
    let list = ws.list_json();
    let (newer, older) = (
        list[0]["id"].as_str().unwrap().to_string(),
        list[1]["id"].as_str().unwrap().to_string(),
    );
    let data = ws.fs_root("local").join("data/app");
    let newer_data = files_under(&data)
        .into_iter()
        .find(|f| f.starts_with(newer.as_str()))
        .unwrap();
    // Someone with write access makes the older manifest also claim the newer backup's data.
    let mp = ws.fs_root("local").join(format!("manifests/app/{older}.json"));
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mp).unwrap()).unwrap();
    m["objects"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({ "key": format!("data/app/{newer_data}"), "size": 1 }));
    std::fs::write(&mp, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    // keep_last = 1 drops the older backup.
    let cfg = ws
        .config_text()
        .replace("type = \"files\"", "type = \"files\"\nretention = { keep_last = 1 }");
    ws.set_config(&cfg);
    ws.ok(&["prune"]);
    assert_eq!(listed_ids(&ws), vec![newer]);
    assert!(data.join(&newer_data).exists(), "prune deleted another backup's data");
    let dir = tempfile::tempdir().unwrap();
    ws.restore_ok(dir.path());
}
