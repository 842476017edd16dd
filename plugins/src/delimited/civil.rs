//! Proleptic Gregorian dates to and from Arrow's `Date32` (days since 1970-01-01), for the
//! `YYYY-MM-DD` fast paths of the reader and the writer.
//!
//! chrono does the same through `NaiveDate`, whose packed representation costs a table lookup and
//! a validation step each way; on a file of dates that was a few percent of the whole run. These
//! are Howard Hinnant's `days_from_civil` and `civil_from_days`, checked against chrono for every
//! day of years 0 to 9999 in the tests below.

/// Days in `month` of `year`, or `None` for a month outside 1..=12.
fn days_in_month(year: i32, month: u32) -> Option<u32> {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    Some(match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    })
}

/// The `Date32` of a calendar date, or `None` if there is no such day (month 13, 30 February).
pub fn days_from_civil(year: i32, month: u32, day: u32) -> Option<i32> {
    if day == 0 || day > days_in_month(year, month)? {
        return None;
    }
    let (m, d) = (month as i32, day as i32);
    // Years start in March, so the leap day is the last day of the year.
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

/// The calendar date (year, month, day) of a `Date32`.
pub fn civil_from_days(days: i32) -> (i32, u32, u32) {
    // i64: days near i32::MAX would overflow the shift to 0000-03-01.
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year as i32, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, NaiveDate};

    use super::*;

    fn chrono_days(d: NaiveDate) -> i32 {
        (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32
    }

    #[test]
    fn every_day_of_years_0_to_9999_matches_chrono() {
        let mut date = NaiveDate::from_ymd_opt(0, 1, 1).unwrap();
        let end = NaiveDate::from_ymd_opt(9999, 12, 31).unwrap();
        let mut days = chrono_days(date);
        while date <= end {
            let (y, m, d) = (date.year(), date.month(), date.day());
            assert_eq!(days_from_civil(y, m, d), Some(days), "{date}");
            assert_eq!(civil_from_days(days), (y, m, d), "{date}");
            date = date.succ_opt().unwrap();
            days += 1;
        }
    }

    #[test]
    fn days_that_do_not_exist_are_refused() {
        for (y, m, d) in [
            (2023, 2, 29),
            (1900, 2, 29),
            (2024, 4, 31),
            (2024, 13, 1),
            (2024, 0, 1),
            (2024, 1, 0),
            (2024, 1, 32),
        ] {
            assert_eq!(days_from_civil(y, m, d), None, "{y}-{m}-{d}");
        }
        assert!(days_from_civil(2000, 2, 29).is_some());
    }

    #[test]
    fn far_days_do_not_overflow() {
        for days in [i32::MIN, i32::MAX, -1, 0] {
            let (y, m, d) = civil_from_days(days);
            assert!(
                (1..=12).contains(&m) && (1..=31).contains(&d),
                "{days}: {y}-{m}-{d}"
            );
        }
    }
}
