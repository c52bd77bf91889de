//! `/v1/poem` with `include`: the keywords stand in the poem (the answer says which line holds
//! each, streamed or not), bad keywords are a 400 naming the field and the keyword, and the
//! OpenAPI document describes the field.

use super::*;

fn error_message(r: &Resp) -> String {
    r.json()["error"]["message"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_poem_holds_every_keyword_of_include() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits::default());
    for (title, include, seed) in [("中秋", json!(["月", "酒"]), 0), ("江上", json!(["孤舟", "雁"]), 1), ("四季", json!(["東风"]), 2)]
    {
        let r = post(addr, "/v1/poem", &json!({"title": title, "include": include, "beams": 3, "seed": seed}));
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let lines: Vec<String> = v["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect();
        let placed = v["include"].as_array().unwrap_or_else(|| panic!("no include: {v}"));
        assert_eq!(placed.len(), include.as_array().unwrap().len(), "{v}");
        for (entry, asked) in placed.iter().zip(include.as_array().unwrap()) {
            assert_eq!(&entry["keyword"], asked, "{v}");
            let line = entry["line"].as_u64().unwrap_or_else(|| panic!("{asked} missing: {v}")) as usize;
            let simplified: String = asked.as_str().unwrap().chars().map(wenhui::generate::poetry::to_simplified).collect();
            assert!(lines[line - 1].contains(&simplified), "{asked} not in line {line}: {lines:?}");
        }
        assert_eq!(v["constraints_ok"], true, "{v}");
    }
    // Streamed: the result carries the same field.
    let events = stream(addr, "/v1/poem", &json!({"title": "中秋", "include": ["酒"], "beams": 2, "stream": true}));
    let last = events.iter().rev().map(|(_, d)| d.as_str()).find(|d| d.contains("\"result\"")).expect("a result event");
    let result: Value = serde_json::from_str(last).unwrap();
    let line = result["result"]["include"][0]["line"].as_u64().unwrap_or_else(|| panic!("{result}"));
    assert!(result["result"]["lines"][line as usize - 1].as_str().unwrap_or_default().contains('酒'), "{result}");
    handle.shutdown().unwrap();
}

#[test]
fn bad_include_is_a_400_naming_the_field_and_the_keyword() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits::default());
    let cases = [
        (json!(["moon"]), vec!["`include`", "keyword `moon`", "not a Chinese character"]),
        (json!(["月", ""]), vec!["`include`", "keyword 2 of 2 is empty"]),
        (json!(["春眠不觉晓"]), vec!["`include`", "`春眠不觉晓` has 5 characters"]),
        (json!(["明月光", "白云飞", "清风来", "山水间", "鸟语声"]), vec!["`include`", "`鸟语声` does not fit"]),
        (json!(["龘"]), vec!["`include`", "`龘`", "not one token"]),
        (json!(["月,酒"]), vec!["`include`", "keyword `月,酒`", "not a Chinese character"]),
        (json!("月"), vec!["include", "expected a sequence"]),
        (json!([1]), vec!["`include[0]`"]),
    ];
    for (include, needles) in cases {
        let r = post(addr, "/v1/poem", &json!({"title": "春", "include": include, "beams": 1}));
        assert_eq!(r.status, 400, "{include}: {}", r.text());
        let m = error_message(&r);
        for n in needles {
            assert!(m.contains(n), "{include}: `{n}` not in {m}");
        }
    }
    // With the acrostic: four 4-character keywords fill the lines after their heads.
    let r = post(
        addr,
        "/v1/poem",
        &json!({"title": "四季", "acrostic": "春夏秋冬", "include": ["明月清风", "白云流水", "高山远树", "落日孤城", "酒"], "beams": 1}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(error_message(&r).contains("`include`: keyword `酒` conflicts with the acrostic heads `春夏秋冬`"), "{}", r.text());
    // No keywords is no constraint.
    let r = post(addr, "/v1/poem", &json!({"title": "春", "include": [], "beams": 1}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["include"], json!([]));
    handle.shutdown().unwrap();
}

#[test]
fn the_openapi_document_describes_include() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits::default());
    let doc = request(addr, "GET", "/openapi.json", b"").json();
    let field = &doc["components"]["schemas"]["PoemRequest"]["properties"]["include"];
    assert_eq!(field["type"], "array", "{field}");
    assert_eq!(field["items"]["type"], "string");
    assert_eq!(field["items"]["maxLength"], 4);
    assert_eq!(field["maxItems"], 8);
    assert!(field["description"].as_str().unwrap_or_default().contains("within one line"), "{field}");
    let answer = &doc["paths"]["/v1/poem"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]["properties"];
    assert_eq!(answer["include"]["items"]["properties"]["line"]["nullable"], true, "{answer}");
    handle.shutdown().unwrap();
}
