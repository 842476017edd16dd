//! Shared inputs for FlowEngine's criterion benchmarks.
//!
//! The generated file follows the layout of the standard benchmark file (12 columns, quoted notes
//! with commas, doubled quotes and the occasional embedded newline), made deterministically in
//! memory so benchmarks need no external data.

/// The YAML `Columns:` list matching [`generate`].
pub const COLUMNS_YAML: &str = "
            - { Name: id, Type: int64 }
            - { Name: customer_id, Type: int32 }
            - { Name: first_name, Type: string }
            - { Name: last_name, Type: string }
            - { Name: email, Type: string }
            - { Name: age, Type: int32 }
            - { Name: country, Type: string }
            - { Name: signup_date, Type: date, Format: \"%Y-%m-%d\" }
            - { Name: account_value, Type: double }
            - { Name: is_active, Type: bool }
            - { Name: score, Type: double }
            - { Name: notes, Type: string, Nullable: true }";

/// `rows` records (plus a header) of benchmark-shaped CSV.
pub fn generate(rows: usize) -> String {
    const FIRST: [&str; 6] = ["Ana", "José", "Zoë", "Łukasz", "Mary", "Tom"];
    const LAST: [&str; 5] = ["García", "O'Brien", "Müller", "Smith", "Nakamura"];
    const COUNTRY: [&str; 5] = ["US", "DE", "FR", "JP", "BR"];
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = String::from(
        "id,customer_id,first_name,last_name,email,age,country,signup_date,account_value,is_active,score,notes\n",
    );
    for i in 0..rows {
        let r = next();
        let (first, last) = (FIRST[(r % 6) as usize], LAST[(r / 7 % 5) as usize]);
        let notes = match r % 10 {
            0..=2 => String::new(),
            3..=5 => format!("\"called back, left a message {}\"", r % 1000),
            6 => "\"said \"\"later\"\" twice\"".to_string(),
            7 if r % 70 == 7 => "\"line one\nline two\"".to_string(),
            _ => format!("plain note {}", r % 100),
        };
        out.push_str(&format!(
            "{},{},{first},{last},{}.{}{i}@example.com,{},{},20{:02}-{:02}-{:02},{}.{:02},{},{:.5},{notes}\n",
            1_000_000_000_000u64 + i as u64,
            r % 2_147_483_647,
            first.to_lowercase(),
            last.to_lowercase().replace('\'', ""),
            18 + r % 72,
            COUNTRY[(r / 3 % 5) as usize],
            10 + r % 15,
            1 + r / 11 % 12,
            1 + r / 13 % 28,
            r % 100_000,
            r % 100,
            if r % 10 < 7 { "true" } else { "false" },
            (r % 10_000) as f64 / 97.0 - 20.0,
        ));
    }
    out
}
